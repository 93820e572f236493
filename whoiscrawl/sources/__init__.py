"""What the registries publish (delegation statistics, bulk dumps) as records; what is left to ask live."""
