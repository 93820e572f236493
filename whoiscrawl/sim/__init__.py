"""The registry simulator: five RDAP/WHOIS services over real allocation data."""
