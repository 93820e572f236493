"""whoiscrawl: map who holds the IPv4 address space through the registries' RDAP/WHOIS services."""

__version__ = "0.1.0"
