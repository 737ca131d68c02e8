"""The gaffer command-line client."""
