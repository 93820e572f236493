"""JSON Schemas of the messages whoiscrawl writes (work items and result records)."""
