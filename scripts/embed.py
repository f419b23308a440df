#!/usr/bin/env python3
"""Writes a C header holding a text file as a string: embed.py NAME INPUT OUTPUT.
The build embeds deploy/monitoring/alerts.yml this way (pgwarden up --with-prometheus)."""
import sys

name, src, out = sys.argv[1:4]
data = open(src, "rb").read().decode("utf-8")
lines = []
for line in data.splitlines(keepends=True):
    esc = line.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    lines.append('\t"%s"' % esc)
with open(out, "w") as f:
    f.write("/* Generated from %s by scripts/embed.py: do not edit. */\n" % src)
    f.write("static const char %s[] =\n%s;\n" % (name, "\n".join(lines) or '\t""'))
