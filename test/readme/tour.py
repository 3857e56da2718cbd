#!/usr/bin/env python3
"""test/readme/tour.py: runs the SQL examples of README.md as a test.

Every ```sql block of the README runs, top to bottom, in one psql session
(blocks fenced as ```sql norun are shown, not run: server settings,
subscriptions, placeholders). When a ```text block follows a sql block with
only blank lines between them, it is what psql prints for that block, and the
test compares the two; a sql block without one must run without an ERROR.
Before comparing, both sides are normalised: uuids, timestamps and process
ids become placeholders, and runs of spaces and table rules collapse, so a
README may show a real uuid and a column width that differs by a digit.

    tour.py check README PSQL...     prints TAP, one test per sql block
    tour.py write README PSQL...     rewrites each output block from what
                                     psql printed (review the diff!)
"""
import re
import subprocess
import sys

FENCE = re.compile(r'^```\s*(\S*)\s*(.*)$')


def parse(lines):
    """Returns [(sql_text, start_line, output_span or None)]; output_span is
    (first, last) line indices of the output block's body."""
    blocks = []            # (lang, rest, body_first, body_last, open_line)
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m:
            j = i + 1
            while j < len(lines) and lines[j].rstrip() != '```':
                j += 1
            if j == len(lines):
                raise SystemExit('README line %d: unclosed code block' % (i + 1))
            blocks.append((m.group(1), m.group(2), i + 1, j, i))
            i = j + 1
        else:
            i += 1
    tour = []
    for k, (lang, rest, first, last, open_line) in enumerate(blocks):
        if lang != 'sql' or 'norun' in rest.split():
            continue
        out = None
        if k + 1 < len(blocks) and blocks[k + 1][0] == 'text':
            between = lines[last + 1:blocks[k + 1][4]]
            if all(not x.strip() for x in between):
                out = (blocks[k + 1][2], blocks[k + 1][3])
        tour.append(('\n'.join(lines[first:last]), open_line + 1, out))
    return tour


MARK = '@@opsflags-readme-block %d@@'


def run(tour, psql):
    script = ['\\set ON_ERROR_STOP 0', '\\pset pager off']
    for n, (sql, _, _) in enumerate(tour):
        script.append('\\echo ' + MARK % n)
        script.append(sql)
    script.append('\\echo ' + MARK % len(tour))
    p = subprocess.run(psql + ['-X', '-q', '-f', '-'], input='\n'.join(script) + '\n',
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    text = re.sub(r'(?m)^psql:<stdin>:\d+: ', '', p.stdout)
    outputs = []
    for n in range(len(tour)):
        a = text.find(MARK % n)
        b = text.find(MARK % (n + 1))
        if a < 0 or b < 0:
            outputs.append(None)     # psql stopped before this block
            continue
        body = text[a + len(MARK % n):b].strip('\n')
        outputs.append(body.rstrip())
    return outputs, text


UUID = re.compile(r'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}')
TS = re.compile(r'\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d(:?\d\d)?|Z)?')
PID = re.compile(r'(server process with PID|"pid": ) ?\d+')


def normal(s):
    s = UUID.sub('<uuid>', s)
    s = TS.sub('<timestamp>', s)
    s = PID.sub(r'\1 <pid>', s)
    s = re.sub(r'-{3,}', '---', s)
    s = re.sub(r'[ \t]+', ' ', s)
    return [x.strip() for x in s.strip().split('\n') if x.strip()]


def main():
    mode, readme, psql = sys.argv[1], sys.argv[2], sys.argv[3:]
    with open(readme) as f:
        lines = f.read().split('\n')
    tour = parse(lines)
    outputs, raw = run(tour, psql)
    if mode == 'write':
        for (sql, line, out), got in sorted(zip(tour, outputs), key=lambda t: -t[0][1]):
            if out is not None and got is not None:
                lines[out[0]:out[1]] = got.split('\n') if got else []
        with open(readme, 'w') as f:
            f.write('\n'.join(lines))
        return 0
    print('1..%d' % len(tour))
    failed = 0
    for n, ((sql, line, out), got) in enumerate(zip(tour, outputs), 1):
        first = sql.strip().split('\n')[0][:60]
        desc = 'README line %d: %s' % (line, first)
        if got is None:
            ok, why = False, ['psql stopped before this block']
        elif out is None:
            ok = not re.search(r'(?m)^(ERROR|FATAL|PANIC):', got)
            why = got.split('\n')
        else:
            want = '\n'.join(lines[out[0]:out[1]])
            ok = normal(want) == normal(got)
            why = ['README shows:'] + want.split('\n') + ['psql printed:'] + got.split('\n')
        if ok:
            print('ok %d - %s' % (n, desc))
        else:
            failed += 1
            print('not ok %d - %s' % (n, desc))
            for x in why[:60]:
                print('#   ' + x)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
