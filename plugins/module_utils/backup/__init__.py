# Copyright: (c) 2026, Namtech
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Backup and restore of what an AI node needs back after a loss: vector stores, databases, config and models.

``run`` makes a backup (sources -> one tar stream -> optional encryption -> parts in a store -> manifest last),
``restore`` brings one back (verify everything -> stage -> swap into place), ``retention`` decides what to keep.
"""
