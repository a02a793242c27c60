"""Serial device links: the framed bench protocol (``cgm_client``, ``pump_client`` over ``link``/``protocol``/
``framing``) and the New Era NE-500/NE-1000 syringe pump (``ne1000``, ``ne1000_link``).

Every port is opened with ``serial.serial_for_url`` (device paths, pseudo-terminals, ``loop://``, ``socket://``).
The protocol is specified in ``docs/serial-protocol.md``. Import the submodules directly; pyserial is imported
only when a port is opened.
"""
