#!/usr/bin/env python
"""Write README.md from nbs/index.ipynb without Quarto.

nbdev's own `nbdev_readme` renders through Quarto, which these machines cannot install. This script
does the same job with nbconvert: it renders the index notebook to Markdown, drops hidden cells and
nbdev directives, and points chapter links at `nbs/` so that they work from the repository root.
Run it from the repository root after editing nbs/index.ipynb; CI checks that README.md is current.
"""
import re, sys
from pathlib import Path
import nbformat
from nbconvert import MarkdownExporter

def render(nb_path='nbs/index.ipynb'):
    "README text for the index notebook."
    nb = nbformat.read(nb_path, as_version=4)
    keep = []
    for c in nb.cells:
        src = c.source.lstrip()
        if c.cell_type == 'code' and (src.startswith('#| hide') or src.startswith('#|hide') or 'default_exp' in src): continue
        if c.cell_type == 'code': c.source = '\n'.join(l for l in c.source.splitlines() if not l.startswith('#|'))
        keep.append(c)
    nb.cells = keep
    body, _ = MarkdownExporter(exclude_input_prompt=True, exclude_output_prompt=True).from_notebook_node(nb)
    body = re.sub(r'\]\(((?:\d\d_|overview\.ipynb|tutorials/|images/)[^)\s]*)\)', r'](nbs/\1)', body)
    header = '<!-- Generated from nbs/index.ipynb by tools/make_readme.py: edit the notebook, not this file. -->\n\n'
    return header + re.sub(r'\n{3,}', '\n\n', body).strip() + '\n'

if __name__ == '__main__':
    text = render()
    if '--check' in sys.argv:
        if Path('README.md').read_text(encoding='utf-8') != text:
            sys.exit('README.md is out of date: run `python tools/make_readme.py`')
    else: Path('README.md').write_text(text, encoding='utf-8')
