"""Static files in production: hashed names, compressed, and the ES modules' own imports rewritten to the hashed
names too (otherwise a module imports its neighbour by the plain name, which is cached for a minute only, and a page
can mix two releases' modules after a deploy)."""
from whitenoise.storage import CompressedManifestStaticFilesStorage


class StaticStorage(CompressedManifestStaticFilesStorage):
    support_js_module_import_aggregation = True
