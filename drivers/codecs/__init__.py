"""Pure byte codecs (bytes in, typed values out). Every decoder raises only :class:`drivers.codecs.errors.DecodeError`."""
