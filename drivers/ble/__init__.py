"""Bluetooth LE device links: the CGMS collector and the IDS pump client on bleak, and a bleak backend on bumble for
emulated devices. Nothing here imports bleak or bumble at package import time."""
