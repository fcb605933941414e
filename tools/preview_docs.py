#!/usr/bin/env python
"""Offline HTML preview of the documentation pages, for machines without Quarto.

    python tools/preview_docs.py            # then open _preview/index.html

1. nbdev's notebook processing (what `proc_nbs`, run by `nbdev_docs`/`nbdev_proc_nbs`, does) writes
   the processed notebooks to `_proc/`: `#| hide` and `#| export` cells removed, `show_doc` cells
   executed, the `# Title` / `> subtitle` cell turned into front matter. `nbdev_proc_nbs` itself is
   not called: it first tries to install Quarto, with sudo, when Quarto is missing; and here one
   failing notebook is reported (exit status 1) without stopping the other pages.
2. Each processed notebook becomes `_preview/<notebook>.html` (nbconvert, lab template), honouring
   the Quarto cell options nbdev leaves behind (`echo`, `output`, `include`), with MathJax 2 served
   from Debian's libjs-mathjax so `$...$` and `$$...$$` typeset from file:// without network.
3. `_preview/index.html` lists the pages in sidebar order (index first, then by file name).
"""
import argparse, html, os, re, shutil, sys
from pathlib import Path

MATHJAX_DIRS = [os.environ.get('MATHJAX_DIR', ''), '/usr/share/javascript/mathjax', '/usr/share/mathjax']
APT_HINT = 'sudo apt-get update && sudo apt-get install -y libjs-mathjax'

# Page template: JupyterLab's look, minus everything that would fetch from the network.
TEMPLATE = r"""{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{% block extra_css %}
<style type="text/css">
  body.jp-Notebook { max-width: 1000px; margin: 0 auto; padding: 0 1rem 3rem; }
  nav.preview-nav { font-family: sans-serif; font-size: 14px; padding: .6rem 0; border-bottom: 1px solid #ddd;
                    display: flex; justify-content: space-between; }
  nav.preview-nav.bottom { border-top: 1px solid #ddd; border-bottom: none; margin-top: 2rem; }
  p.description { font-style: italic; font-size: 135%; opacity: .7; margin-top: -.5rem; }
  .jp-RenderedImage img { max-width: 100%; height: auto; }
  div[class^="callout"] { border-left: 4px solid #2780e3; background: #f3f8fe; padding: .2rem 1rem; margin: 1rem 0; }
</style>
{% endblock extra_css %}
{%- block body_header -%}
{{ super() }}
{{ resources.preview_nav }}
{%- endblock body_header -%}
{% block body_footer %}
{{ resources.preview_nav | replace('class="preview-nav"', 'class="preview-nav bottom"') }}
{{ super() }}
{% endblock body_footer %}
"""

def find_mathjax():
    for d in MATHJAX_DIRS:
        if d and (Path(d) / 'MathJax.js').is_file(): return Path(d)
    sys.exit('error: MathJax.js not found (looked in: ' + ', '.join(d for d in MATHJAX_DIRS if d) + ').\n'
             f'Install Debian\'s MathJax 2 with:\n    {APT_HINT}\n(or set MATHJAX_DIR to a folder holding MathJax.js)')

def page_order(proc):
    "Processed notebooks in nbdev's sidebar order: index first, then by path; skips _* and .* names."
    nbs = [p for p in proc.rglob('*.ipynb')
           if not any(part.startswith(('_', '.')) for part in p.relative_to(proc).parts)]
    return sorted(nbs, key=lambda p: (p.parent.relative_to(proc).parts, p.stem != 'index', p.name))

def split_options(src):
    "Strip the leading `#|` lines of a code cell; return (options dict, remaining source)."
    lines, opts = src.splitlines(), {}
    i = 0
    while i < len(lines) and (lines[i].startswith('#|') or (opts and not lines[i].strip())):
        body = lines[i][2:].strip()
        if body:
            k, sep, v = body.partition(':')
            opts[k.strip()] = v.strip().lower() if sep else 'true'
        i += 1
    return opts, '\n'.join(lines[i:])

def pandoc_to_html(md):
    "The bits of Pandoc markdown nbdev emits that plain markdown lacks: link attributes and ::: divs."
    md = re.sub(r'\[([^\]]*)\]\(([^)\s]*)\)\{([^}]*)\}',
                lambda m: f'<a href="{m.group(2)}" {m.group(3)}>{m.group(1)}</a>', md)
    md = re.sub(r'^:::+\s*\{([^}]*)\}\s*$',
                lambda m: '<div class="' + ' '.join(re.findall(r'\.([\w-]+)', m.group(1))) + '">\n', md, flags=re.M)
    return re.sub(r'^:::+\s*$', '\n</div>', md, flags=re.M)

def prepare(nb, yaml):
    "Turn the front-matter cell into a title, apply Quarto cell options; return (nb, front matter)."
    import nbformat
    fm, cells = {}, []
    for c in nb.cells:
        if c.cell_type == 'raw' and c.source.lstrip().startswith('---') and not fm:
            fm = yaml.safe_load(c.source.strip().strip('-')) or {}
            head = f"# {fm.get('title', '')}\n"
            if fm.get('description'): head += f"\n<p class=\"description\">{html.escape(fm['description'])}</p>\n"
            cells.append(nbformat.v4.new_markdown_cell(head))
            continue
        if c.cell_type == 'markdown': c.source = pandoc_to_html(c.source)
        if c.cell_type == 'code':
            opts, c.source = split_options(c.source)
            for o in c.get('outputs', []):
                md = o.get('data', {}).get('text/markdown')
                if md: o['data']['text/markdown'] = pandoc_to_html(md)
            if opts.get('include') == 'false' or 'hide' in opts: continue
            tags = set(c.metadata.get('tags', []))
            if opts.get('echo') == 'false' or not c.source.strip(): tags.add('preview-no-input')
            if opts.get('output') == 'false': tags.add('preview-no-output')
            if not c.source.strip() and not c.get('outputs'): continue
            c.metadata['tags'] = sorted(tags)
        cells.append(c)
    nb.cells = cells
    nb.metadata.pop('widgets', None)
    if fm.get('title'): nb.metadata['title'] = fm['title']
    return nb, fm

def nav_html(pages, i, prefix):
    "Top/bottom navigation: previous, contents, next."
    link = lambda j: f'<a href="{prefix}{pages[j]["href"]}">{html.escape(pages[j]["title"])}</a>'
    prev = ('&larr; ' + link(i - 1)) if i > 0 else ''
    nxt = (link(i + 1) + ' &rarr;') if i + 1 < len(pages) else ''
    return (f'<nav class="preview-nav"><span>{prev}</span><a href="{prefix}index.html">Contents (offline preview)</a>'
            f'<span>{nxt}</span></nav>')

def fix_links(body, link_map, prefix):
    "Point links to notebooks or to the published pages at the preview's files."
    def sub(m):
        url, anchor = m.group(2), m.group(3) or ''
        key = url.split('/')[-1] if url.startswith('http') else url.lstrip('./')
        if url.startswith('http') and not any(url.startswith(b) for b in link_map['_bases']): return m.group(0)
        tgt = link_map.get(key) or link_map.get(key.replace('.ipynb', '.html'))
        return f'{m.group(1)}"{prefix}{tgt}{anchor}"' if tgt else m.group(0)
    return re.sub(r'(href=)"([^"#]+\.(?:ipynb|html))(#[^"]*)?"', sub, body)

def _proc_one(job):
    "Run nbdev's processing of one notebook; return None, or the error as text (never raise)."
    import nbdev.serve_drv
    try: nbdev.serve_drv.main(job)
    except Exception as e:
        msg = f'{type(e).__name__}: {e}'
        if e.__cause__ is not None: msg += f'\n    caused by {type(e.__cause__).__name__}: {e.__cause__}'
        return msg

def process_notebooks(cfg, force=False, n_workers=2):
    "nbdev's `proc_nbs` (same cache in `_proc/`, same processors), but one failing notebook does not stop the rest."
    import nbdev.serve
    from fastcore.parallel import parallel
    from nbdev.doclinks import nbglob
    path, cache = cfg.nbs_path, cfg.config_path / '_proc'
    files = list(nbglob(path, func=Path, file_glob='', file_re=''))
    files += [path / f for f in ('_quarto.yml', '_brand.yml') if (path / f).exists()]
    chk_mtime = max(cfg.config_file.stat().st_mtime, Path(nbdev.serve.__file__).stat().st_mtime)
    cache.mkdir(parents=True, exist_ok=True)
    if force or cache.stat().st_mtime < chk_mtime: shutil.rmtree(cache); cache.mkdir()
    jobs = [j for j in (nbdev.serve._proc_file(f, cache, path, mtime=cache.stat().st_mtime) for f in files) if j]
    # the workers are spawned: hand them this file as an importable module, not as __main__
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    worker = __import__(Path(__file__).stem)._proc_one
    errs = parallel(worker, jobs, n_workers=n_workers, method='spawn', pause=0.01) if jobs else []
    failed = {}
    for (src, dst, _), err in zip(jobs, errs):
        if err:
            failed[src.relative_to(path)] = err
            if dst.exists(): dst.unlink()     # never show a stale page for a notebook that fails now
    cache.touch()
    return cache, failed

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', default='_preview', help='output folder (default: _preview)')
    ap.add_argument('--force', action='store_true', help='re-process every notebook (ignore _proc/ cache)')
    ap.add_argument('--copy-mathjax', action='store_true',
                    help='copy MathJax (about 32 MB) instead of linking it, for a folder you can move elsewhere')
    ap.add_argument('--n_workers', type=int, default=2, help='notebooks processed in parallel (default: 2)')
    args = ap.parse_args()

    mathjax = find_mathjax()
    root = Path(__file__).resolve().parents[1]
    os.chdir(root)
    import yaml, nbformat
    from traitlets.config import Config
    from nbconvert import HTMLExporter
    from nbdev.config import get_config

    cfg = get_config()
    print('processing notebooks with nbdev (as nbdev_docs does) ...', flush=True)
    proc, failed = process_notebooks(cfg, force=args.force, n_workers=args.n_workers)
    out = root / args.out
    if out.exists(): shutil.rmtree(out)
    out.mkdir(parents=True)
    # MathJax next to the pages, so file:// pages load it without a server or network
    if args.copy_mathjax: shutil.copytree(mathjax, out / 'mathjax', ignore=shutil.ignore_patterns('test', 'unpacked'))
    else: (out / 'mathjax').symlink_to(mathjax, target_is_directory=True)
    # images and other files the notebooks refer to keep their relative paths
    for f in proc.rglob('*'):
        rel = f.relative_to(proc)
        if f.is_file() and f.suffix not in ('.ipynb', '.yml') and not f.name.startswith('_') and not any(
                p.startswith('.') for p in rel.parts):
            (out / rel).parent.mkdir(parents=True, exist_ok=True); shutil.copy2(f, out / rel)

    pages = []
    for p in page_order(proc):
        if not (cfg.nbs_path / p.relative_to(proc)).exists(): continue   # stale copy of a removed notebook
        nb, fm = prepare(nbformat.read(p, as_version=4), yaml)
        rel = p.relative_to(proc).with_suffix('.html')
        if rel == Path('index.html'): rel = Path('home.html')    # index.html is the contents page
        pages.append(dict(nb=nb, rel=rel, href=rel.as_posix(), title=fm.get('title', p.stem),
                          description=fm.get('description', ''), output_file=fm.get('output-file')))
    if not pages: sys.exit(f'error: no notebooks found under {proc}')

    base = f"{cfg.doc_host}{cfg.doc_baseurl}".rstrip('/') + '/'
    link_map = {'_bases': [base]}
    for pg in pages:
        src_nb = 'index.ipynb' if pg['href'] == 'home.html' else pg['rel'].with_suffix('.ipynb').as_posix()
        link_map[pg['href']] = link_map[src_nb] = pg['href']
        if pg['output_file']: link_map[pg['output_file']] = pg['href']

    c = Config()
    c.TagRemovePreprocessor.enabled = True
    c.TagRemovePreprocessor.remove_input_tags = {'preview-no-input'}
    c.TagRemovePreprocessor.remove_all_outputs_tags = {'preview-no-output'}
    c.HTMLExporter.exclude_input_prompt = True
    c.HTMLExporter.exclude_output_prompt = True
    tpl_dir = out / '.template'
    tpl_dir.mkdir()
    (tpl_dir / 'preview.html.j2').write_text(TEMPLATE)
    exporter = HTMLExporter(config=c, template_name='lab', extra_template_paths=[str(tpl_dir)],
                            template_file='preview.html.j2')
    for i, pg in enumerate(pages):
        prefix = '../' * (len(pg['rel'].parts) - 1)
        exporter.mathjax_url = f'{prefix}mathjax/MathJax.js?config=TeX-AMS_CHTML-full,Safe'
        body, _ = exporter.from_notebook_node(pg['nb'], resources={'preview_nav': nav_html(pages, i, prefix)})
        dest = out / pg['rel']
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(fix_links(body, link_map, prefix), encoding='utf-8')
        print(f'  {dest.relative_to(root)}')
    shutil.rmtree(tpl_dir)

    items = '\n'.join(f'<li><a href="{pg["href"]}">{html.escape(pg["title"])}</a>'
                      + (f' <span class="d">— {html.escape(pg["description"])}</span>' if pg['description'] else '')
                      + f' <code>{"index" if pg["href"] == "home.html" else pg["rel"].with_suffix("").as_posix()}.ipynb</code></li>'
                      for pg in pages)
    fails = ''.join(f'<li><code>nbs/{nb}</code>: <pre>{html.escape(err)}</pre></li>' for nb, err in sorted(failed.items()))
    fails = f'<h2 style="color:#b00">Not shown: nbdev could not process</h2><ul>{fails}</ul>' if fails else ''
    (out / 'index.html').write_text(f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(cfg.title)}: offline docs preview</title>
<style>body{{font-family:sans-serif;max-width:900px;margin:2rem auto;line-height:1.5}} .d{{color:#555}}
code{{color:#888;font-size:85%}} li{{margin:.4rem 0}}</style></head>
<body><h1>{html.escape(cfg.title)}</h1><p>{html.escape(cfg.get('description', ''))}</p>
<p><em>Offline preview of the documentation pages (nbconvert; the published site is built with
<code>nbdev_docs</code> and Quarto).</em></p>
<ul>
{items}
</ul>{fails}</body></html>
""", encoding='utf-8')
    print(f'\n{len(pages)} page(s). Open: file://{out / "index.html"}')
    if failed:
        print(f'\nerror: nbdev could not process {len(failed)} notebook(s) (nbdev_docs would fail the same way):',
              file=sys.stderr)
        for nb, err in sorted(failed.items()): print(f'  nbs/{nb}: {err}', file=sys.stderr)
        sys.exit(1)

if __name__ == '__main__': main()
