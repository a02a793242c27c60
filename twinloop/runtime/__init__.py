"""The device runtime: configuration, real-time setup, clocks, the periodic scheduler, the systemd watchdog, the
production loop (reading -> snapshot -> decide -> supervise -> pump -> journal) and the local control socket.

Heavy or optional imports (drivers, bleak, the controller) happen inside the functions that need them.
"""
