"""Models users ship that the zoo does not have, defined in code for the tests: a GRU
tagger on int64 token ids, a two-input model (a dict of an image and a category id) and a
keyword-spotting CNN on a 49x10 MFCC map with its own labelled data. Each module has a
``make`` factory, the form a suite names as ``factory = "module:make"``."""
