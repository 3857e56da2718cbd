#!/usr/bin/perl
# test/http/check_metrics.pl: a strict checker of the Prometheus text
# exposition format (0.0.4) for the tests, in case promtool is missing, and
# in addition to it.  Reads the exposition on stdin; prints each problem and
# exits 1 if there is any.  It checks: every line is a HELP, a TYPE, another
# comment or a sample; names and label names are valid; label values are
# quoted with only \\, \" and \n escapes; values are floats (or NaN, +Inf,
# -Inf); a family's HELP and TYPE come once, before its samples; a family's
# samples are contiguous; no series repeats; counters end in _total; the
# text ends with a newline.
use strict;
use warnings;

my $name_re  = qr/[a-zA-Z_:][a-zA-Z0-9_:]*/;
my $label_re = qr/[a-zA-Z_][a-zA-Z0-9_]*/;
my $value_re = qr/(?:[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)|NaN|[-+]Inf)/;

local $/;
my $text = <STDIN>;
my @problems;
push @problems, "empty exposition" if !defined $text || $text eq '';
$text //= '';
push @problems, "does not end with a newline" if $text ne '' && substr($text, -1) ne "\n";

my (%help, %type, %seen_series, %family_done, %sampled);
my $current = '';
my $n = 0;
for my $line (split /\n/, $text) {
    $n++;
    if ($line =~ /^# HELP ($name_re) (.*)$/) {
        push @problems, "line $n: second HELP for $1" if $help{$1}++;
        push @problems, "line $n: HELP for $1 after its samples" if $sampled{$1};
        next;
    }
    if ($line =~ /^# TYPE ($name_re) (counter|gauge|histogram|summary|untyped)$/) {
        my ($f, $t) = ($1, $2);
        push @problems, "line $n: second TYPE for $f" if exists $type{$f};
        push @problems, "line $n: TYPE for $f after its samples" if $sampled{$f};
        push @problems, "line $n: counter $f does not end in _total" if $t eq 'counter' && $f !~ /_total$/;
        $type{$f} = $t;
        next;
    }
    if ($line =~ /^# (HELP|TYPE)/) {
        push @problems, "line $n: malformed $1 line: $line";
        next;
    }
    next if $line =~ /^#/;
    if ($line eq '') {
        push @problems, "line $n: empty line";
        next;
    }
    if ($line !~ /^($name_re)(\{.*\})? ($value_re)(?: -?\d+)?$/) {
        push @problems, "line $n: not a sample: $line";
        next;
    }
    my ($name, $labels) = ($1, $2 // '');
    # Families: a sample belongs to the family of its TYPE (histogram and
    # summary suffixes aside).
    my $family = $name;
    $family =~ s/_(bucket|sum|count)$// unless exists $type{$name};
    push @problems, "line $n: sample of $name before any TYPE line" unless exists $type{$family};
    if ($family ne $current) {
        push @problems, "line $n: samples of $family are not contiguous" if $family_done{$family};
        $family_done{$current} = 1 if $current ne '';
        $current = $family;
    }
    $sampled{$family} = 1;
    my %names;
    if ($labels ne '') {
        my $body = substr($labels, 1, -1);
        while ($body ne '') {
            if ($body =~ s/^($label_re)="((?:[^"\\\n]|\\[\\"n])*)"//) {
                push @problems, "line $n: label $1 repeated" if $names{$1}++;
                push @problems, "line $n: reserved label name $1" if $1 =~ /^__/;
                last if $body eq '';
                if ($body !~ s/^,//) {
                    push @problems, "line $n: labels not separated by a comma: $labels";
                    last;
                }
            }
            else {
                push @problems, "line $n: malformed labels: $labels";
                last;
            }
        }
    }
    my $series = $name . '{' . join(',', sort split /,(?=$label_re=")/, $labels =~ s/^\{|\}$//gr) . '}';
    push @problems, "line $n: series repeated: $series" if $seen_series{$series}++;
}
for my $f (sort keys %help) {
    push @problems, "HELP for $f without a TYPE" unless exists $type{$f};
}

if (@problems) {
    print "$_\n" for @problems;
    exit 1;
}
exit 0;
