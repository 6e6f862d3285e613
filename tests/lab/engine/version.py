"""The lab engine's version; build.py rewrites this file inside each release archive."""

VERSION = "0.12.6-lab"
