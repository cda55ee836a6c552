"""City model: the data pack, terrain, land cover, buildings and streets, and the build of the data products."""
