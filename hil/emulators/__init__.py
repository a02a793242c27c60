"""Emulated devices for HIL benches and CI: BLE CGMS and IDS peripherals on bumble (``ble_cgms``, ``ble_ids``,
``ble_link``) and serial emulators. Import the submodules directly; nothing heavy is imported here."""
