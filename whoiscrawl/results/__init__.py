"""What people do with a crawl's results: read and deduplicate, summarise, export, map, diff, status."""
