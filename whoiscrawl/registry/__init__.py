"""The registry client package: RDAP (`rdap`), port-43 WHOIS (`whois`), a circuit breaker, the client."""

from whoiscrawl.registry.breaker import CircuitBreaker
from whoiscrawl.registry.client import Egress, Listing, ListingStopped, LookupResult, RegistryClient
from whoiscrawl.registry.outcome import Kind, LookupFailed, MalformedAnswer, Outcome
from whoiscrawl.registry.rdap import RdapParser, down_link
from whoiscrawl.registry.whois import WhoisRateLimited, parse_whois, parse_whois_listing

__all__ = [
    "CircuitBreaker",
    "Egress",
    "Kind",
    "Listing",
    "ListingStopped",
    "LookupFailed",
    "LookupResult",
    "MalformedAnswer",
    "Outcome",
    "RdapParser",
    "RegistryClient",
    "WhoisRateLimited",
    "down_link",
    "parse_whois",
    "parse_whois_listing",
]
