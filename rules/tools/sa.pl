#!/usr/bin/perl
# usage: sa.pl rulesdir listfile basedir nworkers > out  ; prints "path\tscore\tHIT,HIT"
use strict; use warnings;
use Mail::SpamAssassin;
use File::Temp qw(tempdir);
my $tmp = tempdir(CLEANUP => 1); mkdir "$tmp/site"; mkdir "$tmp/home";
my ($rules, $list, $base, $nw) = @ARGV; $nw ||= 2;
open my $fh, '<', $list or die; my @files = map { chomp; $_ } <$fh>; close $fh;
my @pids;
for my $w (0..$nw-1) {
  my $pid = fork; die unless defined $pid;
  if (!$pid) {
    my $sa = Mail::SpamAssassin->new({ rules_filename => $rules, site_rules_filename => "$tmp/site",
      userprefs_filename => '/nonexistent', local_tests_only => 1, dont_copy_prefs => 1,
      username => 'nobody', home_dir_for_helpers => "$tmp/home", post_config_text => "use_bayes 0\nuse_auto_whitelist 0\n" });
    $sa->init(1);
    open my $out, '>', "$tmp/out.$w" or die;
    for (my $i = $w; $i < @files; $i += $nw) {
      my $f = $files[$i]; my $p = $f =~ m{^/} ? $f : "$base/$f";
      open my $m, '<', $p or next; local $/; my $txt = <$m>; close $m;
      my $msg = $sa->parse($txt); my $st = $sa->check($msg);
      my $hits = join ',', sort split /,/, $st->get_names_of_tests_hit;
      printf $out "%s\t%.3f\t%s\n", $f, $st->get_score, $hits;
      $st->finish; $msg->finish;
    }
    close $out; exit 0;
  }
  push @pids, $pid;
}
waitpid $_, 0 for @pids;
for my $w (0..$nw-1) { open my $i, '<', "$tmp/out.$w"; print while <$i>; close $i; unlink "$tmp/out.$w"; }
