"""History: dated generations of a map, the map as of any date, and the change feed."""
