"""The images the CaD-VI datasets are built from: what each dataset needs, where to fetch it, and what it is.

* :mod:`.identity`: canonical identities (``coco:143961``, ``vg:2550``, ...) of file names under every dataset's
  naming schemes, and the links (Visual Genome's ``coco_id`` / ``flickr_id``) that join them;
* :mod:`.needs`: the image names a dataset's own rows list (its layout under the image root);
* :mod:`.sources`: the sources' annotation files (COCO, Visual Genome, Open Images, NLVR2) read into URLs;
* :mod:`.plan`: needs + sources -> download jobs, and the manifest of what is missing and why;
* :mod:`.download` / :mod:`.transfer` / :mod:`.verify`: the concurrent, resumable, verifying downloader;
* :mod:`.phash`: perceptual hashes (cached, resumable) and near-duplicate search, for the contamination audit.
"""
