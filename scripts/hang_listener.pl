#!/usr/bin/env perl
# hang_listener.pl PORT [PIDFILE]: a TCP server on 127.0.0.1:PORT that
# accepts every connection and never answers.  It reads and discards what
# clients send and keeps their connections open until they close them, so a
# client waiting for a reply waits until its own timeout.  Exits on SIGTERM
# (or SIGINT/SIGHUP), removing PIDFILE if it wrote one.
#
# scripts/test.sh runs it to test that memcached health probes of a server
# that hangs are bounded by opsflags.health_timeout.
use strict;
use warnings;
use IO::Socket::INET;
use IO::Select;

my ($port, $pidfile) = @ARGV;
die "usage: $0 PORT [PIDFILE]\n" unless defined $port && $port =~ /^\d+$/ && $port > 0 && $port < 65536;

my $listener = IO::Socket::INET->new(
    LocalAddr => '127.0.0.1',
    LocalPort => $port,
    Proto     => 'tcp',
    Listen    => 64,
    ReuseAddr => 1,
) or die "hang_listener: cannot listen on 127.0.0.1:$port: $!\n";

if (defined $pidfile) {
    open my $fh, '>', $pidfile or die "hang_listener: cannot write $pidfile: $!\n";
    print {$fh} "$$\n";
    close $fh;
}

my $stop = 0;
$SIG{TERM} = $SIG{INT} = $SIG{HUP} = sub { $stop = 1 };
$SIG{PIPE} = 'IGNORE';

my $select = IO::Select->new($listener);
until ($stop) {
    # Wake up now and then to notice a signal that arrived between checks.
    my @ready = $select->can_read(0.5);
    for my $sock (@ready) {
        if ($sock == $listener) {
            my $client = $listener->accept or next;
            $select->add($client);
            next;
        }
        # A client: swallow its bytes, forget it once it has hung up.
        my $n = sysread($sock, my $buf, 65536);
        if (!defined $n || $n == 0) {
            $select->remove($sock);
            close $sock;
        }
    }
}

for my $sock ($select->handles) {
    close $sock;
}
unlink $pidfile if defined $pidfile;
exit 0;
