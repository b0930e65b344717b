#!/usr/bin/python3
"""Reads `birdsong classify --format csv` output on stdin and prints, for non-target audio,
the seed's symptom: windows, mean number of species with p > 0.5 per window, and the share
of windows with at least one. Usage: birdsong classify ... | count_above.py [THRESHOLD]"""
import csv
import sys

thr = float(sys.argv[1]) if len(sys.argv) > 1 else 0.5
rows = list(csv.reader(sys.stdin))[1:]
n = len(rows)
above = [sum(float(p) > thr for p in r[3:]) for r in rows]
print("windows %d  species>%.2f per window %.3f  windows with any %.1f%%" %
      (n, thr, sum(above) / max(n, 1), 100.0 * sum(a > 0 for a in above) / max(n, 1)))
