"""Event contracts: the Avro schemas, their Python events and the codec.

``events`` holds the dataclasses and loads the ``.avsc`` files; ``codec`` turns
events into bytes and back. Import those modules directly: this package stays
empty so that importing the events does not pull in the Schema Registry client.
"""
