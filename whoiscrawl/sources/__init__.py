"""What the registries publish (delegation statistics, bulk dumps) read into the record schema, and what is left to ask live."""
