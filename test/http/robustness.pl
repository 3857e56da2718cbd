#!/usr/bin/perl
# test/http/robustness.pl: the client side of test/http/robustness.sh, which
# tries to break the HTTP server of the "opsflags http" worker.  Core Perl
# only.  Every mode talks to 127.0.0.1:PORT and prints its figures as
# "key=value" words on one line, then any problems as "# bad ..." lines.
#
#   fuzz PORT SEED TIMEOUT_S PROCS   generated hostile requests (see cases())
#   churn PORT N PROCS               N connections: whole requests, requests
#                                    cut short, responses read in part
#   parallel PORT CLIENTS REQUESTS   CLIENTS at once, each REQUESTS requests
#   stall PORT PATH COUNT            send COUNT requests and read nothing
#                                    until a line arrives on stdin
#   flood PORT linger|pipeline SECS  keep the server busy with one client
#   hold PORT N                      N clients connected at once, answers
#                                    read only when a line arrives on stdin
#
# A response is well formed when it is "HTTP/1.1 CODE REASON" with a code
# the server may send and that code's reason, header lines "Name: value",
# one Content-Type, one numeric Content-Length, one Connection (close or
# keep-alive), then exactly Content-Length bytes of body (none for HEAD);
# nothing may follow a "Connection: close" response.
use strict;
use warnings;
use Socket qw(PF_INET SOCK_STREAM SOL_SOCKET SO_RCVBUF SO_LINGER IPPROTO_TCP TCP_NODELAY
              SHUT_WR inet_aton pack_sockaddr_in);
use IO::Select;
use IO::Handle;
use Time::HiRes qw(time sleep);
use POSIX qw(EINTR EAGAIN ECONNRESET _exit);

$SIG{PIPE} = 'IGNORE';
STDOUT->autoflush(1);
# however the server behaves, no process of a run lasts longer than this
my $LIMIT_S = $ENV{ROBUST_LIMIT_S} || 120;
alarm($LIMIT_S);

my %REASON = (200 => 'OK', 204 => 'No Content', 304 => 'Not Modified', 400 => 'Bad Request', 401 => 'Unauthorized',
              403 => 'Forbidden', 404 => 'Not Found', 405 => 'Method Not Allowed', 408 => 'Request Timeout',
              411 => 'Length Required', 413 => 'Content Too Large', 429 => 'Too Many Requests',
              431 => 'Request Header Fields Too Large', 500 => 'Internal Server Error', 503 => 'Service Unavailable', 505 => 'HTTP Version Not Supported');

my ($mode, $port, @args) = @ARGV;
die "usage: $0 fuzz|churn|parallel|stall|flood PORT ...\n" unless $mode && $port;

# ---------- sockets ----------

# connect_to(RCVBUF): a connected socket, or undef ($! says why)
sub connect_to {
    my ($rcvbuf) = @_;
    socket(my $s, PF_INET, SOCK_STREAM, 0) or return undef;
    setsockopt($s, SOL_SOCKET, SO_RCVBUF, $rcvbuf) if $rcvbuf;
    connect($s, pack_sockaddr_in($port, inet_aton('127.0.0.1'))) or return undef;
    setsockopt($s, IPPROTO_TCP, TCP_NODELAY, 1);
    binmode $s;
    return $s;
}

# send_all(S, BYTES): false if the server stopped taking them
sub send_all {
    my ($s, $data) = @_;
    my $off = 0;
    while ($off < length $data) {
        my $n = syswrite($s, $data, length($data) - $off, $off);
        if (!defined $n) {
            next if $! == EINTR;
            return 0;
        }
        $off += $n;
    }
    return 1;
}

# reset_close(S): close with an RST (SO_LINGER 0), as a crashed client would
sub reset_close {
    my ($s) = @_;
    setsockopt($s, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0));
    close $s;
}

# read_all(S, DEADLINE, MAX): (bytes, how it ended: eof, reset, timeout, max, error ...)
sub read_all {
    my ($s, $deadline, $max) = @_;
    my $buf = '';
    my $sel = IO::Select->new($s);
    for (;;) {
        my $left = $deadline - time;
        return ($buf, 'timeout') if $left <= 0;
        next unless $sel->can_read($left);
        my $n = sysread($s, my $chunk, 65536);
        if (!defined $n) {
            next if $! == EINTR;
            return ($buf, $! == ECONNRESET ? 'reset' : "error ($!)");
        }
        return ($buf, 'eof') if $n == 0;
        $buf .= $chunk;
        return ($buf, 'max') if $max && length $buf >= $max;
    }
}

sub esc {
    my ($s) = @_;
    $s = substr($s, 0, 120) . '...(' . length($s) . ' bytes)' if length $s > 150;
    $s =~ s/([^\x20-\x7e])/sprintf('\\x%02x', ord $1)/ge;
    return $s;
}

# parse(BYTES, HEAD_OK): (codes, error or undef).  HEAD_OK: a response
# followed by nothing or by the next status line may have no body.
sub parse {
    my ($data, $head_ok) = @_;
    my @codes;
    my $pos = 0;
    my $closed = 0;
    while ($pos < length $data) {
        return (\@codes, 'bytes after a "Connection: close" response') if $closed;
        my $end = index($data, "\r\n\r\n", $pos);
        return (\@codes, 'incomplete head: ' . esc(substr($data, $pos))) if $end < 0;
        my ($status, @lines) = split /\r\n/, substr($data, $pos, $end - $pos), -1;
        $pos = $end + 4;
        $status =~ m{^HTTP/1\.1 (\d{3}) ([^\r\n]*)\z} or return (\@codes, 'bad status line: ' . esc($status));
        my ($code, $reason) = ($1, $2);
        return (\@codes, "unexpected status code $code") unless $REASON{$code};
        return (\@codes, "code $code with reason \"$reason\"") unless $reason eq $REASON{$code};
        my %h;
        for my $l (@lines) {
            $l =~ /^([A-Za-z0-9-]+): ([\x20-\x7e]*)\z/ or return (\@codes, 'bad header line: ' . esc($l));
            push @{$h{lc $1}}, $2;
        }
        my ($cl, $ct, $conn) = @h{qw(content-length content-type connection)};
        # 204 and 304 have no body, so neither Content-Length nor Content-Type
        $cl = ['0'] if ($code == 204 || $code == 304) && !$cl;
        return (\@codes, "$code without one numeric Content-Length")
            unless $cl && @$cl == 1 && $cl->[0] =~ /^[0-9]+\z/;
        return (\@codes, "$code without one Content-Type") unless $ct && @$ct == 1 || $code == 204 || $code == 304;
        return (\@codes, "$code without one Connection: close or keep-alive")
            unless $conn && @$conn == 1 && $conn->[0] =~ /^(close|keep-alive)\z/;
        my $len = $cl->[0];
        unless ($head_ok && $len > 0 && ($pos == length $data || substr($data, $pos, 9) eq 'HTTP/1.1 ')) {
            return (\@codes, sprintf('%d body has %d of its %d bytes', $code, length($data) - $pos, $len))
                if length($data) - $pos < $len;
            $pos += $len;
        }
        push @codes, $code;
        $closed = $conn->[0] eq 'close';
    }
    return (\@codes, undef);
}

# ---------- fuzz ----------

my $rng_state;
sub rnd { $rng_state = ($rng_state * 1103515245 + 12345) % 2147483648; return $rng_state / 2147483648; }
sub irand { return int(rnd() * $_[0]); }
sub pick { return $_[irand(scalar @_)]; }
sub rbytes { my ($n, $lo, $hi) = @_; return join '', map { chr($lo + irand($hi - $lo + 1)) } 1 .. $n; }

my @GOOD_PATHS = qw(/livez /readyz /health /api/health /metrics /flags/production /api/status / /index.html /nope);

# cases(SEED): the generated cases.  Each: desc, chunks (sent in turn),
# delay (s between chunks), end (shut: half-close and read to the end;
# hold: read until the server closes; rst: reset at once; close: close at
# once), expect (a regex the list of codes must match, or undef), head.
sub cases {
    my ($seed) = @_;
    $rng_state = $seed;
    my @c;
    my $add = sub {
        my ($desc, $bytes, %o) = @_;
        push @c, {desc => $desc, chunks => ref $bytes ? $bytes : [$bytes], delay => $o{delay} || 0,
                  end => $o{end} || 'shut', expect => $o{expect},
                  head => (ref $bytes ? join('', @$bytes) : $bytes) =~ /HEAD/ ? 1 : 0};
    };
    my $req = sub { my ($m, $p, $extra) = @_; return "$m $p HTTP/1.1\r\n" . ($extra // '') . "\r\n"; };

    # random bytes, any value, NUL included
    for my $i (1 .. 40) {
        my $b = rbytes(1 + irand(400), 0, 255);
        $b .= "\r\n\r\n" if $i % 2;
        $add->("random bytes $i", $b, end => $i % 5 == 0 ? 'hold' : 'shut');
    }
    # printable noise with CR and LF in odd places
    for my $i (1 .. 30) {
        my $b = join '', map { pick('GET', ' ', '/', "\r", "\n", "\r\n", 'HTTP/1.1', ':', rbytes(1 + irand(8), 32, 126), "\0") }
            1 .. 5 + irand(40);
        $add->("CR/LF noise $i", $b . pick('', "\r\n\r\n", "\n\n", "\r\r"), end => $i % 6 == 0 ? 'hold' : 'shut');
    }
    # a good request with one byte changed, inserted or removed
    for my $i (1 .. 40) {
        my $b = $req->(pick('GET', 'HEAD'), pick(@GOOD_PATHS), pick('', "Host: x\r\n", "Connection: close\r\n"));
        my $at = irand(length $b);
        my $op = irand(3);
        substr($b, $at, 1) = chr(irand(256)) if $op == 0;
        substr($b, $at, 0) = chr(irand(256)) if $op == 1;
        substr($b, $at, 1) = '' if $op == 2;
        $add->("mutated request $i", $b, end => $i % 8 == 0 ? 'hold' : 'shut');
    }
    # request heads just under, at and over 8192 bytes: one long header line or a long target
    for my $len (8100, 8190, 8191, 8192, 8193, 8194, 8200, 9000, 16384, 70000) {
        my $pre = "GET /livez HTTP/1.1\r\nX-Long: ";
        $add->("head of $len bytes (one long header)", $pre . ('a' x ($len - length($pre) - 4)) . "\r\n\r\n",
               expect => $len <= 8192 ? qr/^200$/ : qr/^431$/);
        my $tpre = 'GET /';
        my $tpost = " HTTP/1.1\r\n\r\n";
        $add->("head of $len bytes (one long target)", $tpre . ('b' x ($len - length($tpre) - length($tpost))) . $tpost,
               expect => $len <= 8192 ? qr/^404$/ : qr/^431$/);
    }
    $add->('8192 bytes without an end of head', 'GET /livez HTTP/1.1' . ("\r\nX: y" x 2000), expect => qr/^431$/, end => 'hold');
    # many headers
    for my $n (20, 100, 400, 600, 700, 2000) {
        my $b = $req->('GET', '/livez', join('', map { "X-H$_: v\r\n" } 1 .. $n));
        $add->("$n headers", $b, expect => length($b) <= 8192 ? qr/^200$/ : qr/^431$/);
    }
    $add->('100 headers of 100 bytes', $req->('GET', '/livez', join('', map { "X-$_: " . ('v' x 94) . "\r\n" } 1 .. 100)),
           expect => qr/^431$/);
    # bare LF and other line endings
    for my $e (["\n", 'bare LF'], ["\r", 'bare CR'], ["\n\r", 'LF CR'], ["\r\r\n", 'CR CR LF']) {
        my ($eol, $name) = @$e;
        $add->("$name line endings", "GET /livez HTTP/1.1${eol}Host: x$eol$eol");
        $add->("$name line endings, kept open", "GET /livez HTTP/1.1${eol}Host: x$eol$eol", end => 'hold',
               expect => qr/^(|200|400|408)$/);
    }
    $add->('bare LF request line, CRLF headers', "GET /livez HTTP/1.1\nHost: x\r\n\r\n", expect => qr/^(|200|400)$/);
    $add->('CRLF request line, bare LF header', "GET /livez HTTP/1.1\r\nHost: x\n\r\n", expect => qr/^(|200|400)$/);
    $add->('leading empty lines', "\r\n\r\nGET /livez HTTP/1.1\r\n\r\n", expect => qr/^(200|400)(,200)?$/);
    # pipelined: good requests, then garbage
    for my $i (1 .. 20) {
        my $good = join '', map { $req->('GET', pick('/livez', '/nope', '/flags/production')) } 1 .. 1 + irand(3);
        my $junk = pick(rbytes(1 + irand(300), 0, 255), "BLAH\r\n\r\n", "GET / HTTP/9.9\r\n\r\n",
                        'GET /livez HTTP/1.1\r\nX: ' . ('z' x 9000), "\0\0\0\r\n\r\n", "GET /livez HTTP/1.1\r\n");
        $add->("pipelined good requests then garbage $i", $good . $junk, expect => qr/^(200|404)(,|$)/);
    }
    $add->('pipelined: Connection: close, then another request', $req->('GET', '/livez', "Connection: close\r\n")
           . $req->('GET', '/health'), expect => qr/^200$/);
    $add->('pipelined: 400, then a good request', "BLAH\r\n\r\n" . $req->('GET', '/health'), expect => qr/^400$/);
    $add->('pipelined: a body that looks like a request is a body', $req->('GET', '/livez', 'Content-Length: ' . length($req->('GET', '/metrics')) . "\r\n")
           . $req->('GET', '/metrics'), expect => qr/^200$/);
    $add->('pipelined: 40 requests', $req->('GET', '/livez') x 39 . $req->('GET', '/livez', "Connection: close\r\n"),
           expect => qr/^200(,200){39}$/);
    $add->('pipelined: HEAD and GET', $req->('HEAD', '/') . $req->('GET', '/livez') . $req->('HEAD', '/metrics'),
           expect => qr/^200,200,200$/);
    # non-ASCII and percent-encoded paths
    for my $p ("/\xc3\xa9t\xc3\xa9", "/flags/\xc3\xbcnic\xc3\xb6de", "/\xff\xfe", "/flags/\x80", "/livez\xc2\xa0",
               "/\xe2\x80\xae/zevil", "/flags/production\xc0\xaf", '/' . rbytes(30, 128, 255), '/' . rbytes(30, 1, 31),
               "/livez\x7f") {
        $add->('non-ASCII path ' . esc($p), $req->('GET', $p), expect => qr/^(400|404)$/);
    }
    for my $p ('/%6c%69%76%65%7a', '/%2e%2e/%2e%2e/etc/passwd', '/flags/%2e%2e', '/flags/..%2F..%2Fetc', '/flags/%00',
               '/flags/production%00', '/%zz', '/%', '/flags/%', '/flags/prod%75ction', '/livez%3Fx', '/livez?%00',
               '/livez?' . ('%41' x 100), '/flags/production?env=staging', '/metrics%0d%0aX-Injected:%20yes') {
        $add->("percent-encoded path $p", $req->('GET', $p), expect => qr/^(200|400|404)$/);
    }
    # /flags/<environment> with odd names
    for my $e ('', '.', '..', '...', '-', '_', '0', 'a', 'a' x 63, 'a' x 64, 'a' x 1000, 'Production', 'PRODUCTION',
               'production/', 'production/x', 'production//', 'production;', 'production,staging', 'production\'',
               "x';drop_table_opsflags.feature_flags;--", 'x"', 'x\\', 'x%27', '-x', '_x', 'x-', 'x_', 'x--y',
               'pg_catalog', 'public', 'information_schema', 'null', 'NULL', 'undefined', 'true', '1e5', '$(id)',
               '*', '%', 'production#frag', 'production?x=1', 'production&x', 'staging', 'development') {
        $add->("/flags/$e", $req->('GET', "/flags/$e"), expect => qr/^(200|404)$/);
    }
    $add->('/flags/ with a space in the name', "GET /flags/prod uction HTTP/1.1\r\n\r\n", expect => qr/^400$/);
    $add->('/flags/ with SQL in the name', "GET /flags/x';drop table opsflags.feature_flags;-- HTTP/1.1\r\n\r\n",
           expect => qr/^400$/);
    $add->('/flags/ with a tab in the name', "GET /flags/prod\tuction HTTP/1.1\r\n\r\n", expect => qr/^(400|404)$/);
    # request-target forms, methods, versions
    my @lines = (
        ['GET http://x/livez HTTP/1.1', qr/^(200|400)$/], ['GET http://127.0.0.1/ HTTP/1.1', qr/^(200|400)$/],
        ['GET https://x:443/health HTTP/1.1', qr/^(200|400)$/], ['CONNECT x:443 HTTP/1.1', qr/^(400|405)$/],
        ['OPTIONS * HTTP/1.1', qr/^(400|405)$/], ['OPTIONS /livez HTTP/1.1', qr/^204$/], ['get /livez HTTP/1.1', qr/^(400|405)$/],
        ['head /livez HTTP/1.1', qr/^(400|405)$/], ['Get /livez HTTP/1.1', qr/^(400|405)$/], ['POST /livez HTTP/1.1', qr/^405$/],
        ['PUT /flags/production HTTP/1.1', qr/^405$/], ['DELETE /flags/production HTTP/1.1', qr/^405$/],
        ['PATCH / HTTP/1.1', qr/^405$/], ['TRACE / HTTP/1.1', qr/^405$/], ['PRI * HTTP/2.0', qr/^(400|505)$/],
        ['GET /', qr/^400$/], ['GET', qr/^400$/], ['', qr/^400$/], [' ', qr/^400$/], ['GET  /livez HTTP/1.1', qr/^400$/],
        ['GET /livez  HTTP/1.1', qr/^400$/], ['GET /livez HTTP/1.1 ', qr/^400$/], [' GET /livez HTTP/1.1', qr/^(400|405)$/],
        ["GET\t/livez\tHTTP/1.1", qr/^400$/], ['GET /livez HTTP/1.2', qr/^505$/], ['GET /livez HTTP/2', qr/^505$/],
        ['GET /livez HTTP/0.9', qr/^505$/], ['GET /livez http/1.1', qr/^400$/], ['GET /livez HTTP/1.10', qr/^505$/],
        ['GET /livez HTTP/01.1', qr/^505$/], ['GET /livez HTTP/', qr/^505$/], ['GET /livez HTTPS/1.1', qr/^400$/],
        ['GET /livez HTTP/1.1/1.1', qr/^505$/], ['G ET /livez HTTP/1.1', qr/^400$/], ['GET livez HTTP/1.1', qr/^400$/],
        ['GET ?x HTTP/1.1', qr/^400$/], ['GET //livez HTTP/1.1', qr/^404$/], ['GET /./livez HTTP/1.1', qr/^404$/],
        ['GET /livez/ HTTP/1.1', qr/^404$/], ['GET /LIVEZ HTTP/1.1', qr/^404$/], ['GET /livez;x HTTP/1.1', qr/^404$/],
        ['GET /livez HTTP/1.0', qr/^200$/], ['HEAD /metrics HTTP/1.0', qr/^200$/], ['GET /livez?a=b&c HTTP/1.1', qr/^200$/],
        ['GET /livez# HTTP/1.1', qr/^404$/], ['GET ' . ('/' x 5000) . ' HTTP/1.1', qr/^404$/],
    );
    for my $l (@lines) {
        $add->('request line ' . esc($l->[0]), "$l->[0]\r\n\r\n", expect => $l->[1]);
    }
    $add->('HTTP/0.9: GET / and nothing else, kept open', "GET /\r\n", end => 'hold', expect => qr/^(|400|408)$/);
    $add->('HTTP/0.9: GET / and a bare LF, kept open', "GET /\n", end => 'hold', expect => qr/^(|400|408)$/);
    # header oddities
    my @heads = (
        ["Host: x\r\n continued\r\n", qr/^(200|400)$/], ["Host: x\r\n\tcontinued\r\n", qr/^(200|400)$/],
        [" Host: x\r\n", qr/^(200|400)$/], ["Connection: close\r\nConnection: keep-alive\r\n", qr/^(200|400)$/],
        ["Connection: keep-alive\r\nConnection: close\r\n", qr/^(200|400)$/], ["Connection: close, keep-alive\r\n", qr/^(200|400)$/],
        ["Connection: upgrade\r\nUpgrade: h2c\r\n", qr/^200$/], ["Connection: \r\n", qr/^200$/], ["Connection\r\n", qr/^(200|400)$/],
        ["Connection close\r\n", qr/^(200|400)$/], [": empty name\r\n", qr/^(200|400)$/], ["Host : x\r\n", qr/^(200|400)$/],
        ["Host: x\r\nHost: y\r\n", qr/^(200|400)$/], ["X-Nul: a\0b\r\n", qr/^400$/], ["X-Bin: \x01\x02\xff\r\n", qr/^(200|400)$/],
        ["Expect: 100-continue\r\n", qr/^(200|417)$/], ["Content-Length: 0\r\n", qr/^200$/], ["Content-Length: 00\r\n", qr/^200$/],
        ["Content-Length: -1\r\n", qr/^400$/], ["Content-Length: +5\r\n", qr/^400$/],
        ["Content-Length: 99999999999999999999999999\r\n", qr/^(400|413)$/], ["Content-Length: 18446744073709551616\r\n", qr/^(400|413)$/],
        ["Content-Length: 9223372036854775808\r\n", qr/^(400|413)$/], ["Content-Length: 1e3\r\n", qr/^(400|413)$/],
        ["Content-Length: abc\r\n", qr/^400$/], ["Content-Length: 5\r\nContent-Length: 0\r\n", qr/^400$/],
        # a body that never comes: answered 408 after the timeout, or not at all once the client is gone
        ["Content-Length:5\r\n", qr/^(408|)$/], ["content-length: 5\r\n", qr/^(408|)$/],
        # a chunked body that never comes, like a Content-Length's
        ["Transfer-Encoding: chunked\r\n", qr/^(408|)$/], ["transfer-encoding: CHUNKED \r\n", qr/^(408|)$/],
        ["Transfer-Encoding: identity\r\n", qr/^411$/], ["Transfer-Encoding: gzip, chunked\r\n", qr/^411$/],
        ["Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", qr/^411$/],
        ["Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", qr/^400$/], ["Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", qr/^400$/],
    );
    for my $h (@heads) {
        $add->('header ' . esc($h->[0]), $req->('GET', '/livez', $h->[0]), expect => $h->[1]);
    }
    my @chunked = (
        ["5\r\nhello\r\n0\r\n\r\n", qr/^200$/], ["0\r\n\r\n", qr/^200$/],
        ["5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n", qr/^200$/], ["A\r\n0123456789\r\n0\r\n\r\n", qr/^200$/],
        ["zz\r\nhello\r\n0\r\n\r\n", qr/^400$/], ["\r\nhello\r\n0\r\n\r\n", qr/^400$/], ["5\r\nhelloXX0\r\n\r\n", qr/^400$/],
        ["5\nhello\r\n0\r\n\r\n", qr/^400$/], ["-5\r\nhello\r\n0\r\n\r\n", qr/^400$/], ["5 \r\nhello\r\n0\r\n\r\n", qr/^400$/],
        ["10001\r\n", qr/^413$/], ["FFFFFFFFFFFFFFFFFFFF\r\n", qr/^413$/],
        ["8000\r\n" . ('x' x 32768) . "\r\n8001\r\n" . ('x' x 32769) . "\r\n0\r\n\r\n", qr/^413$/],
        ["1\r\nx\r\n" x 5000 . "0\r\n\r\n", qr/^200$/], ["1\r\nx\r\n" x 20000 . "0\r\n\r\n", qr/^(400|)$/],
        ["1\r\nx\r\n0\r\n" . ('X-Trailer: y' x 1000), qr/^400$/],
    );
    for my $c (@chunked) {
        $add->('chunked body ' . esc(substr($c->[0], 0, 60)), $req->('GET', '/livez', "Transfer-Encoding: chunked\r\n") . $c->[0],
               expect => $c->[1]);
    }
    $add->('Content-Length: 5 and its body, to a GET route', $req->('POST', '/livez', "Content-Length: 5\r\n") . 'hello', expect => qr/^405$/);
    $add->('Content-Length: 5 and its body, GET', $req->('GET', '/livez', "Content-Length: 5\r\n") . 'hello', expect => qr/^200$/);
    $add->('Content-Length: 1000000 and a short body, kept open', $req->('GET', '/livez', "Content-Length: 1000000\r\n") . 'x' x 100,
           end => 'hold', expect => qr/^413$/);
    # the management API: hostile paths, cookies, tokens, keys and sign-in bodies (never a 500)
    my @api_paths = ('/api/v1/', '/api/v1/flags', '/api/v1/flags/x', '/api/v1/flags/x/toggle', '/api/v1/flags/%00',
                     '/api/v1/flags/%ff%fe', '/api/v1/flags/' . ('k' x 300), '/api/v1/../status', '/api/v1//flags',
                     '/api/v1/audit?limit=-1&since=%zz', '/api/v1/flags?search=' . ('%41' x 500), '/api/v1/session',
                     '/api/v1/config/x?environment=%27', "/api/v1/flags/x';drop_table_x;--");
    for my $p (@api_paths) {
        for my $m ('GET', 'POST', 'PATCH', 'DELETE') {
            $add->("$m $p without credentials", $req->($m, $p, $m eq 'GET' ? '' : "Content-Length: 0\r\n"),
                   expect => qr/^(400|401|403|404)$/);
        }
    }
    for my $cookie ('opsflags_session=', 'opsflags_session=x', 'opsflags_session=' . ('a' x 43), 'opsflags_session=' . ('a' x 5000),
                    'a=b; opsflags_session=%00', 'opsflags_session="quoted"; x', ';;;;', 'opsflags_session', "opsflags_session=\x01\xff",
                    'x=1;opsflags_session=' . ('-' x 43) . ';opsflags_session=y') {
        $add->('API with cookie ' . esc(substr($cookie, 0, 60)), $req->('GET', '/api/v1/flags', "Cookie: $cookie\r\n"),
               expect => qr/^(400|401)$/);
        $add->('API write with cookie ' . esc(substr($cookie, 0, 60)) . ' and a CSRF token',
               $req->('POST', '/api/v1/flags', "Cookie: $cookie\r\nX-CSRF-Token: " . ('z' x 43) . "\r\nContent-Length: 2\r\n") . '{}',
               expect => qr/^(400|401|403)$/);
    }
    for my $key ('x', 'opsf_a_000000000000_' . ('a' x 43), 'opsf_c_zzzzzzzzzzzz_x', 'Bearer', 'Bearer ' . ('b' x 3000), "opsf_a_\x00") {
        $add->('API with key ' . esc(substr($key, 0, 60)), $req->('GET', '/api/v1/flags', "Authorization: $key\r\n"),
               expect => qr/^(400|401|403)$/);
    }
    $add->('API write from another Origin', $req->('POST', '/api/v1/flags', "Origin: http://evil.example\r\nCookie: opsflags_session=x\r\nX-CSRF-Token: y\r\nContent-Length: 0\r\n"),
           expect => qr/^403$/);
    for my $body ('', '{', 'null', '[]', '{"role": 1, "password": 2}', '{"role": "postgres"}', '{"role": "x", "password": "y", "z": {"a": [[[[[]]]]]}}',
                  '{"role": "' . ('r' x 5000) . '", "password": "p"}', '{"role": "\u0000", "password": "p"}', "{\"role\": \"\xff\", \"password\": \"p\"}",
                  '{"a":' x 300, rbytes(200, 0, 255)) {
        $add->('sign-in body ' . esc(substr($body, 0, 60)),
               $req->('POST', '/api/v1/session', 'Content-Length: ' . length($body) . "\r\n") . $body,
               expect => qr/^(400|401|429)$/);
    }
    $add->('GET /api/openapi.json', $req->('GET', '/api/openapi.json'), expect => qr/^200$/);
    # sent a byte or a few at a time
    for my $i (1 .. 8) {
        my $b = $req->('GET', pick('/livez', '/health', '/flags/production'), "Host: x\r\n");
        my @ch;
        while (length $b) { push @ch, substr($b, 0, 1 + irand(4), ''); }
        $add->("request in " . scalar(@ch) . " pieces $i", \@ch, delay => 0.002, expect => qr/^200$/);
    }
    $add->('request split between CR and LF', ["GET /livez HTTP/1.1\r", "\nHost: x\r\n\r", "\n"], delay => 0.05, expect => qr/^200$/);
    # gone at once
    for my $i (1 .. 10) {
        $add->("reset after part of a request $i", substr($req->('GET', '/metrics', "Host: x\r\n"), 0, irand(40)), end => 'rst');
        $add->("reset right after a request $i", $req->('GET', pick(@GOOD_PATHS)), end => pick('rst', 'close'));
    }
    for my $i (0 .. $#c) { $c[$i]{id} = $i + 1; }
    return @c;
}

# run_case(CASE, TIMEOUT): (codes as "a,b", problem or undef, seconds)
sub run_case {
    my ($c, $timeout) = @_;
    my $t0 = time;
    my $s = connect_to(0) or return ('', "connect: $!", 0);
    my $sent_all = 1;
    for my $i (0 .. $#{$c->{chunks}}) {
        sleep($c->{delay}) if $i > 0 && $c->{delay};
        $sent_all = send_all($s, $c->{chunks}[$i]) or last;
    }
    if ($c->{end} eq 'rst') { reset_close($s); return ('', undef, time - $t0); }
    if ($c->{end} eq 'close') { close $s; return ('', undef, time - $t0); }
    shutdown($s, SHUT_WR) if $c->{end} eq 'shut';
    my ($data, $how) = read_all($s, time + $timeout + 5);
    close $s;
    my ($codes, $err) = parse($data, $c->{head});
    my $got = join ',', @$codes;
    $err //= "the server did not close the connection within " . ($timeout + 5) . " s" if $how eq 'timeout';
    $err //= "got \"$got\", expected " . "$c->{expect}" if defined $c->{expect} && $got !~ $c->{expect};
    return ($got, $err, time - $t0);
}

sub fuzz {
    my ($seed, $timeout, $procs) = @_;
    # the cases that wait for the server's timeout first, spread over the processes
    my @cases = sort { ($b->{end} eq 'hold') <=> ($a->{end} eq 'hold') || $a->{id} <=> $b->{id} } cases($seed);
    my %codes;
    my ($responses, $bad, $slowest, $slowest_case) = (0, 0, 0, '');
    my @bad;
    pipe(my $rd, my $wr) or die "pipe: $!";
    my @pids;
    for my $k (0 .. $procs - 1) {
        my $pid = fork() // die "fork: $!";
        if ($pid == 0) {
            alarm($LIMIT_S);
            close $rd;
            $wr->autoflush(1);
            for (my $i = $k; $i < @cases; $i += $procs) {
                my ($got, $err, $took) = run_case($cases[$i], $timeout);
                $err //= '';
                $err =~ s/\n/ /g;
                print $wr join("\t", $i, $got, sprintf('%.3f', $took), $err), "\n";
            }
            _exit(0);
        }
        push @pids, $pid;
    }
    close $wr;
    my $n = 0;
    while (my $line = <$rd>) {
        chomp $line;
        my ($i, $got, $took, $err) = split /\t/, $line, 4;
        $n++;
        for my $code (split /,/, $got) { $codes{$code}++; $responses++; }
        ($slowest, $slowest_case) = ($took, $cases[$i]{desc}) if $took > $slowest;
        if ($err ne '') {
            $bad++;
            push @bad, "# bad case $cases[$i]{id} ($cases[$i]{desc}): $err; sent: " . esc(join '', @{$cases[$i]{chunks}});
        }
    }
    waitpid($_, 0) for @pids;
    printf "cases=%d run=%d responses=%d bad=%d codes=%s slowest=%.1fs (%s)\n", scalar @cases, $n, $responses, $bad,
        join(',', map { "$_:$codes{$_}" } sort keys %codes) || 'none', $slowest, esc($slowest_case);
    print "$_\n" for @bad;
}

# ---------- churn ----------

# churn_one(KIND): one connection of that kind: (problem or undef, complete responses)
sub churn_one {
    my ($kind) = @_;
    my $deadline = time + 15;
    my %small = (mid_page => 1, mid_metrics => 1, mid_status => 1);
    my $s = connect_to($small{$kind} ? 2048 : 0) or return ("connect: $!", 0);
    my $get = sub { "GET $_[0] HTTP/1.1\r\n" . ($_[1] // '') . "\r\n" };
    my %simple = (livez => ['/livez', 200], status => ['/api/status', 200], health => ['/health', 200],
                  flags => ['/flags/production', 200], nope => ['/nope', 404], metrics => ['/metrics', 200]);
    if ($simple{$kind}) {
        my ($path, $want) = @{$simple{$kind}};
        send_all($s, $get->($path, "Connection: close\r\n")) or return ("send: $!", 0);
        my ($data, $how) = read_all($s, $deadline);
        close $s;
        my ($codes, $err) = parse($data, 0);
        return ($err, scalar @$codes) if $err;
        return ("$path: got @$codes ($how), expected $want", scalar @$codes) unless "@$codes" eq $want;
        return (undef, 1);
    }
    if ($kind eq 'keepalive') {
        send_all($s, $get->('/livez') . $get->('/flags/production') . $get->('/livez', "Connection: close\r\n"))
            or return ("send: $!", 0);
        shutdown($s, SHUT_WR);
        my ($data, $how) = read_all($s, $deadline);
        close $s;
        my ($codes, $err) = parse($data, 0);
        return ($err, scalar @$codes) if $err;
        return ("keep-alive: got @$codes ($how)", scalar @$codes) unless "@$codes" eq '200 200 200';
        return (undef, 3);
    }
    if ($kind eq 'part_fin' || $kind eq 'part_rst') {
        send_all($s, substr($get->('/metrics', "Host: x\r\n"), 0, 5 + irand(20)));
        $kind eq 'part_rst' ? reset_close($s) : close $s;
        return (undef, 0);
    }
    if ($kind =~ /^mid_(page|metrics|status)$/) {
        my $path = {page => '/', metrics => '/metrics', status => '/api/status'}->{$1};
        send_all($s, $get->($path)) or return ("send: $!", 0);
        my ($data, $how) = read_all($s, $deadline, 200);
        return ("$path: no start of a response ($how)", 0) unless $data =~ m{^HTTP/1\.1 200 OK\r\n};
        $kind eq 'mid_status' ? reset_close($s) : close $s;
        return (undef, 0);
    }
    if ($kind eq 'silent') { close $s; return (undef, 0); }
    if ($kind eq 'bad_noread') { send_all($s, "BLAH\r\n\r\n"); close $s; return (undef, 0); }
    die "unknown kind $kind";
}

sub churn {
    my ($n, $procs, $seed) = @_;
    my @kinds = ((('livez') x 9), qw(keepalive part_fin part_rst mid_page mid_page flags nope silent bad_noread));
    my @rare = qw(mid_metrics mid_status health metrics status);
    pipe(my $rd, my $wr) or die "pipe: $!";
    my @pids;
    for my $k (0 .. $procs - 1) {
        my $pid = fork() // die "fork: $!";
        if ($pid == 0) {
            alarm($LIMIT_S);
            close $rd;
            $wr->autoflush(1);
            $rng_state = $seed + $k;
            for (my $i = $k; $i < $n; $i += $procs) {
                my $kind = $i % 25 == 7 ? $rare[($i / 25) % @rare] : $kinds[$i % @kinds];
                my ($err, $complete) = churn_one($kind);
                $err //= '';
                $err =~ s/\n/ /g;
                print $wr "$kind\t$complete\t$err\n";
            }
            _exit(0);
        }
        push @pids, $pid;
    }
    close $wr;
    my ($conns, $complete, $bad, %kinds, @bad) = (0, 0, 0);
    while (my $line = <$rd>) {
        chomp $line;
        my ($kind, $c, $err) = split /\t/, $line, 3;
        $conns++;
        $complete += $c;
        $kinds{$kind}++;
        if ($err ne '') { $bad++; push @bad, "# bad $kind connection: $err" if @bad < 20; }
    }
    waitpid($_, 0) for @pids;
    printf "connections=%d complete_responses=%d bad=%d kinds=%s\n", $conns, $complete, $bad,
        join(',', map { "$_:$kinds{$_}" } sort keys %kinds);
    print "$_\n" for @bad;
}

# ---------- parallel ----------

sub parallel {
    my ($clients, $requests) = @_;
    my @paths = qw(/livez /health /metrics /api/status /flags/production);
    pipe(my $rd, my $wr) or die "pipe: $!";
    pipe(my $go_rd, my $go_wr) or die "pipe: $!";    # everyone starts when it closes
    my @pids;
    for my $k (0 .. $clients - 1) {
        my $pid = fork() // die "fork: $!";
        if ($pid == 0) {
            alarm($LIMIT_S);
            close $rd;
            close $go_wr;
            $wr->autoflush(1);
            sysread($go_rd, my $nothing, 1);
            for my $i (0 .. $requests - 1) {
                my $path = $paths[($k + $i) % @paths];
                my $t0 = time;
                my $s = connect_to(0);
                my ($out, $err) = ('', '');
                if (!$s) {
                    ($out, $err) = ('noconn', "connect: $!");
                } else {
                    send_all($s, "GET $path HTTP/1.1\r\nConnection: close\r\n\r\n");
                    my ($data, $how) = read_all($s, time + 20);
                    close $s;
                    my ($codes, $perr) = parse($data, 0);
                    if ($data eq '') {
                        ($out, $err) = ('noresponse', "$path: no response ($how)");
                    } elsif ($perr) {
                        ($out, $err) = ('bad', "$path: $perr ($how)");
                    } elsif ("@$codes" eq '200') {
                        $out = '200';
                    } elsif ("@$codes" eq '503' && $data =~ /\r\n\r\ntoo many connections\n\z/) {
                        $out = 'busy';
                    } else {
                        ($out, $err) = ('bad', "$path: got @$codes: " . esc(substr($data, index($data, "\r\n\r\n") + 4))) ;
                    }
                }
                printf $wr "%s\t%.3f\t%s\n", $out, time - $t0, $err;
            }
            _exit(0);
        }
        push @pids, $pid;
    }
    close $wr;
    close $go_wr;
    my (%n, @bad);
    my $slowest = 0;
    while (my $line = <$rd>) {
        chomp $line;
        my ($out, $took, $err) = split /\t/, $line, 3;
        $n{$out}++;
        $slowest = $took if $took > $slowest;
        push @bad, "# $err" if $err ne '' && @bad < 20;
    }
    waitpid($_, 0) for @pids;
    printf "requests=%d ok=%d busy=%d bad=%d noresponse=%d noconn=%d slowest=%.2fs\n", $clients * $requests,
        map({ $n{$_} // 0 } qw(200 busy bad noresponse noconn)), $slowest;
    print "$_\n" for @bad;
}

# ---------- stall ----------

# stall PATH COUNT: COUNT pipelined GETs of PATH; once the first bytes of
# the answer are there (not read), "stalled"; read nothing until a line
# arrives on stdin, then read it all and say how it ended.
sub stall {
    my ($path, $count) = @_;
    my $s = connect_to(2048) or die "connect: $!";
    send_all($s, "GET $path HTTP/1.1\r\n\r\n" x ($count || 1)) or die "send: $!";
    my $t0 = time;
    IO::Select->new($s)->can_read(20) or die "no answer in 20 s\n";
    printf "stalled after=%.2fs\n", time - $t0;
    my $line = <STDIN>;    # the test says when to read
    my ($data, $how) = read_all($s, time + 20);
    my $bodies = 0;
    my $responses = () = $data =~ m{HTTP/1\.1 200 OK\r\n}g;
    my $cl = $data =~ /\r\nContent-Length: (\d+)\r\n/ ? $1 : -1;
    printf "status=%s responses=%d of %d content_length=%d bytes=%d end=%s after=%.1fs\n",
        $data =~ m{^HTTP/1\.1 (\d+)} ? $1 : 'none', $responses, $count || 1, $cl, length $data, $how, time - $t0;
}

# ---------- hold ----------

# hold N: N connections, each with a GET /livez (Connection: close) sent;
# "held" once all are connected (the server need not have accepted them);
# after a line on stdin, read every answer.
sub hold {
    my ($n) = @_;
    my @s;
    for (1 .. $n) {
        my $s = connect_to(0) or die "connect: $!";
        send_all($s, "GET /livez HTTP/1.1\r\nConnection: close\r\n\r\n");
        push @s, $s;
    }
    print "held\n";
    my $line = <STDIN>;
    my $t0 = time;
    my ($ok, @bad) = (0);
    for my $s (@s) {
        my ($data, $how) = read_all($s, time + 15);
        close $s;
        my ($codes, $err) = parse($data, 0);
        if (!$err && "@$codes" eq '200') { $ok++; }
        else { push @bad, '# bad: ' . ($err // "got \"@$codes\" ($how)"); }
    }
    printf "answered=%d of %d after=%.1fs\n", $ok, $n, time - $t0;
    print "$_\n" for @bad;
}

# ---------- flood ----------

sub flood {
    my ($kind, $secs) = @_;
    my $s = connect_to(0) or die "connect: $!";
    my $end = time + $secs;
    my ($sent, $got, $responses, $how) = (0, 0, 0, 'done');
    my $chunk = $kind eq 'linger' ? 'x' x 65536 : "GET /livez HTTP/1.1\r\n\r\n" x 200;
    send_all($s, "BLAH\r\n\r\n") if $kind eq 'linger';
    $s->blocking(0);
    my $rsel = IO::Select->new($s);
    my $wsel = IO::Select->new($s);
    my $tail = '';
    print "flooding\n";
    while (time < $end) {
        my ($r, $w) = IO::Select->select($rsel, $wsel, undef, 0.2);
        if ($r && @$r) {
            my $n = sysread($s, my $buf, 65536);
            if (defined $n && $n == 0) {
                # linger: the server answered and shut its side; go on sending
                $rsel->remove($s);
                next if $kind eq 'linger';
                $how = 'eof';
                last;
            }
            if (!defined $n && $! != EAGAIN && $! != EINTR) { $how = $! == ECONNRESET ? 'reset' : "error ($!)"; last; }
            if ($n) {
                $got += $n;
                $tail .= $buf;
                $responses += () = $tail =~ m{HTTP/1\.1 200 }g;
                $tail = substr($tail, -16);
            }
        }
        if ($w && @$w) {
            my $n = syswrite($s, $chunk);
            if (!defined $n && $! != EAGAIN && $! != EINTR) { $how = $! == ECONNRESET ? 'reset' : "error ($!)"; last; }
            $sent += $n if $n;
        }
    }
    close $s;
    printf "sent=%d received=%d responses=%d end=%s after=%.1fs\n", $sent, $got, $responses, $how, $secs - ($end - time);
}

if ($mode eq 'fuzz') { fuzz(@args); }
elsif ($mode eq 'churn') { churn(@args); }
elsif ($mode eq 'parallel') { parallel(@args); }
elsif ($mode eq 'stall') { stall(@args); }
elsif ($mode eq 'flood') { flood(@args); }
elsif ($mode eq 'hold') { hold(@args); }
else { die "unknown mode $mode\n"; }
