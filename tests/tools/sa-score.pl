#!/usr/bin/perl
# sa-score.pl: the SpamAssassin reference scores for the parity test (tests/integration/test_parity.py)
# and for anyone comparing Tamis with SpamAssassin by hand.
#
# Loads Mail::SpamAssassin once, the way `spamd -L --cf 'use_bayes 0'` runs it: local tests only,
# no Bayes, no auto-learning, no user preferences, no AWL/TxRep, the stock rules
# (/usr/share/spamassassin) and site configuration (/etc/spamassassin) unless told otherwise.
# Then scores every message file named on the command line (or one per line on stdin with "-")
# and prints one line per message, tab-separated:
#
#   <file> \t <score> \t <spam 0|1> \t RULE=score,RULE=score,...      (rules sorted by name)
#
# <score> is PerMsgStatus::get_score (the 3-decimal rounded sum); rule scores are the ones of the
# active score set ($pms->{conf}->{scores}). A file that cannot be read prints "<file>\tERROR\t<why>".
#
# Usage: sa-score.pl [--rules DIR] [--site DIR] [--cf LINE]... [--base DIR] FILE... | -
#   --base DIR   file names are relative to DIR (printed as given)
#   --timing     print "# N messages in S s (R msg/s)" to stderr at the end
#   --batch      score all messages in the one process, as spamd does, instead of one fork per
#                message (faster, but capture-template rules then depend on earlier messages)
use strict;
use warnings;
use Getopt::Long;
use Time::HiRes qw(time);
use IO::Handle;
use POSIX ();
use Mail::SpamAssassin;

my $rules = '/usr/share/spamassassin';
my $site  = '/etc/spamassassin';
my @cf;
my $base = '';
my $timing = 0;
my $batch = 0;
GetOptions('batch' => \$batch, 'rules=s' => \$rules, 'site=s' => \$site, 'cf=s' => \@cf, 'base=s' => \$base,
           'timing' => \$timing) or die "usage: $0 [--rules DIR] [--site DIR] [--cf LINE]... FILE...|-\n";

my @files = @ARGV;
if (@files == 1 && $files[0] eq '-') {
    @files = ();
    while (my $l = <STDIN>) { chomp $l; push @files, $l if length $l; }
}

# A private, empty home so that nothing from ~/.spamassassin leaks in.
my $home = "/tmp/sa-score.$$";
mkdir $home;
END { system('rm', '-rf', $home) if defined $home && -d $home; }

my $sa = Mail::SpamAssassin->new({
    rules_filename      => $rules,
    site_rules_filename => $site,
    userprefs_filename  => '/dev/null',
    userstate_dir       => $home,
    local_tests_only    => 1,
    dont_copy_prefs     => 1,
    post_config_text    => join("\n", "use_bayes 0", "bayes_auto_learn 0", "use_auto_whitelist 0",
                                "use_txrep 0", @cf) . "\n",
});
$sa->compile_now(0, 1);
$|=1;

sub score_one {
    my ($f) = @_;
    my $path = length $base ? "$base/$f" : $f;
    my $fh;
    unless (open($fh, '<', $path)) { print "$f\tERROR\t$!\n"; return; }
    binmode $fh;
    my $text = do { local $/; <$fh> };
    close $fh;
    my $msg = $sa->parse($text, 0);
    my $pms = $sa->check($msg);
    my $scores = $pms->{conf}->{scores};
    my @hits = sort @{ $pms->{test_names_hit} || [] };
    my $list = join(',', map { sprintf('%s=%s', $_, 0 + ($scores->{$_} // 0)) } @hits);
    printf "%s\t%s\t%d\t%s\n", $f, 0 + $pms->get_score(), $pms->is_spam() ? 1 : 0, $list;
    $pms->finish();
    $msg->finish();
}

my $t0 = time;
my $n = 0;
for my $f (@files) {
    if ($batch) {
        score_one($f);
    } else {
        # Each message in a fork of the loaded process, so that no message sees state left by
        # another: SpamAssassin compiles capture-template rules (%{GB_TO_ADDR}) with /o, which
        # freezes the first message's captured value for the life of a process (spamd children
        # included). A fork scores the message as a one-shot `spamassassin` run would.
        my $pid = fork();
        die "fork: $!" unless defined $pid;
        if ($pid == 0) {
            score_one($f);
            STDOUT->flush();
            POSIX::_exit(0);
        }
        waitpid($pid, 0);
        print "$f\tERROR\tscoring process exited with status $?\n" if $? != 0;
    }
    $n++;
}
my $dt = time - $t0;
printf STDERR "# %d messages in %.1f s (%.2f msg/s)\n", $n, $dt, $dt > 0 ? $n / $dt : 0 if $timing;
$sa->finish();
