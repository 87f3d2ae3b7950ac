"""Files that flow between apps."""
