"""The hardened readers of files from elsewhere: a linear pre-scan of pickles (pickle_scan.py),
the restricted unpickler (unpickler.py), bounded .npz reading (npz.py), checkpoint checks
(checkpoint.py), and the checks every such loader shares: bounded JSON, what a file plainly is,
messages that never advise loading unsafely (foreign_files.py)."""
