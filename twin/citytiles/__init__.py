"""The textured city tileset: facade, roof and ground images and the building and terrain meshes of a
data pack's build, written as OGC 3D Tiles through the generic GLB/b3dm encoders of `twin.tiles`.

`step.tiles_step()` is the build step (`tiles`); `writer.write_tileset_from_build` writes the tileset.
"""
