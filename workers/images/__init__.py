"""Image update automation: policies choose tags from registries, setters write them into Git."""
