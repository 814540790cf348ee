"""The dataset layouts a source manifest can be built from, by name: one table that the command line reads for its
choices (importing no builder, so ``--help`` answers at once) and the builders' registry."""

# name -> the module whose ``build(root)`` reads that layout
BUILDER_MODULES = {
    "kinetics700": "manifests.builders.kinetics",
    "moments": "manifests.builders.moments",
    "videolt": "manifests.builders.videolt",
    "laion": "manifests.builders.laion",
    "webvid": "manifests.builders.webvid",
    "tgif": "manifests.builders.tgif",
    "vatex": "manifests.builders.vatex",
    "pexels": "manifests.builders.pexels",
}
SOURCES = tuple(BUILDER_MODULES)
