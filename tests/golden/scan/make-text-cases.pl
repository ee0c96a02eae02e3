#!/usr/bin/perl
# Regenerates text-cases.txt: random strings (blanks, commas, tabs, CR/LF, 8-bit bytes, long
# words) and what SpamAssassin 4.0.1's own functions make of them. Each line: MODE HEXIN HEXOUT
# ("-" for empty). w: Util::wrap($s, "  ", "Content preview:  ", 75, 1); d: Util::wrap($s,
# "*      ", 14 spaces, 75, 0); h: mime_encode_header(_process_header("Status", $s)) with
# fold_headers 1. test_scan.c replays them against lib/scan.
use strict;
use warnings;
use Mail::SpamAssassin;
use Mail::SpamAssassin::Util;
use Mail::SpamAssassin::PerMsgStatus;

srand(11);
my $pms = bless { conf => { fold_headers => 1 } }, 'Mail::SpamAssassin::PerMsgStatus';
my @alph = ('a', 'b', 'c', 'X', ' ', ' ', ' ', "\t", ',', "\n", "\xc3", "\xa9", '=', '?', '-', '0',
            "\r", "\xa0", "\x85", "\x0b", "\x0c");
my @words = ('hello', 'TESTS-FOO', 'autolearn=disabled', 'version=4.0.1',
             'BAYES_99,HTML_MESSAGE,', 'a' x 30, 'b' x 80, 'score=5.1', 'required=5.0');
for my $i (1 .. 150) {
  my $mode = (qw(w d h))[int(rand(3))];
  my $s = '';
  for (1 .. int(rand(41))) {
    if (rand() < 0.5) { $s .= $words[int(rand(@words))]; }
    else { $s .= $alph[int(rand(@alph))] for 1 .. int(rand(7)); }
  }
  $s =~ s/_([A-Z])/-$1/g if $mode eq 'h';    # no template tags
  my $r = $mode eq 'w' ? Mail::SpamAssassin::Util::wrap($s, "  ", "Content preview:  ", 75, 1)
        : $mode eq 'd' ? Mail::SpamAssassin::Util::wrap($s, "*      ", " " x 14, 75, 0)
        : $pms->mime_encode_header($pms->_process_header("Status", $s));
  printf "%s %s %s\n", $mode, (length $s ? unpack("H*", $s) : '-'), (length $r ? unpack("H*", $r) : '-');
}
