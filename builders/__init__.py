"""Everything that *makes* CaD-VI data, and the dataset machinery shared by the two builders.

``builders.release`` holds what both dataset builders need: row validation, image-root
resolution, source resolution, content hashing, statistics and the Hub layout writer.
"""
