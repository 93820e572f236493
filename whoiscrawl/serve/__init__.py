"""Serving the map: the interval index, lookups, MMDB export and an RDAP mirror."""
