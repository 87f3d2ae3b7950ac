"""Apps: decorators that turn functions and shell commands into tasks."""
