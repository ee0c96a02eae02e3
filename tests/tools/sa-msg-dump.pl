#!/usr/bin/perl
# sa-msg-dump.pl: prints what SpamAssassin 4.0 derives from each message given on the command line,
# in the format of "test_msg --dump" so the two can be diffed:
#   === FILE <path>
#   L <rendered body line>        get_decoded_stripped_body_text_array (Subject first)
#   R <rawbody chunk>             get_decoded_body_text_array
#   U <uri>                       get_uri_list (sorted, unique)
#   V <relay>                     parsed Received chain, trusted then untrusted, newest first
#   H <stat>=<value>              HTML statistics of the last HTML part (HTMLEval's $pms->{html})
#   T <tag>=<balance>             HTML tags seen and their open-minus-close balance
#   M <counter>=<value>           MIMEEval counters (_check_attachments)
#   F <flag>                      message parse flags set (check_msg_parse_flags)
#   D <Name>: <decoded value>     top-level header fields in order, decoded (get_all_headers)
# Lines are escaped: "\" → "\\", LF → "\n", CR → "\r". Usage: sa-msg-dump.pl FILE...
use strict;
use warnings;
use Mail::SpamAssassin;

my $sa = Mail::SpamAssassin->new({
    local_tests_only => 1,
    dont_copy_prefs  => 1,
    userprefs_filename => '/dev/null',
    debug => 0,
});
$sa->init(1);

sub esc {
    my ($s) = @_;
    utf8::encode($s) if utf8::is_utf8($s);
    $s =~ s/\\/\\\\/g;
    $s =~ s/\n/\\n/g;
    $s =~ s/\r/\\r/g;
    return $s;
}

binmode STDOUT;
for my $file (@ARGV) {
    open(my $fh, '<', $file) or die "$file: $!";
    binmode $fh;
    my $data = do { local $/; <$fh> };
    close $fh;
    my $msg = $sa->parse($data, 1);
    my $pms = Mail::SpamAssassin::PerMsgStatus->new($sa, $msg);
    $pms->extract_message_metadata();
    print "=== FILE $file\n";
    for my $l (@{ $pms->get_decoded_stripped_body_text_array() }) {
        print "L ", esc($l), "\n";
    }
    for my $r (@{ $pms->get_decoded_body_text_array() }) {
        print "R ", esc($r), "\n";
    }
    my %seen;
    for my $u (sort grep { !$seen{$_}++ } $pms->get_uri_list()) {
        print "U ", esc($u), "\n";
    }
    for my $r (@{ $pms->{relays_trusted} || [] },
               @{ $pms->{relays_untrusted} || [] }) {
        print "V ", esc("[ ip=$r->{ip} rdns=$r->{rdns} helo=$r->{helo} by=$r->{by} "
            . "ident=$r->{ident} envfrom=" . ($r->{envfrom} || '')
            . " id=$r->{id} auth=$r->{auth} ]"), "\n";
    }
    my $h = $pms->{html} || {};
    for my $k (qw(html_length non_space_len image_area length max_size min_size
                  obfuscation_ratio backhair_count bad_tag_ratio non_element_ratio
                  closed_extra_ratio font_low_contrast font_invalid_color form_action_mailto
                  embeds)) {
        printf "H %s=%.6g\n", $k, $h->{$k} if defined $h->{$k} && $h->{$k} ne '';
    }
    my $in = $h->{inside} || {};
    print "T $_=$in->{$_}\n" for sort keys %$in;
    my ($mime) = grep { ref($_) =~ /MIMEEval/ } @{ $sa->{plugins}->{plugins} };
    if ($mime) {
        $mime->_check_attachments($pms);
        for my $k (qw(mime_base64_count mime_base64_encoded_text mime_body_html_count
                      mime_body_text_count mime_missing_boundary mime_multipart_alternative
                      mime_multipart_ratio mime_qp_count mime_qp_long_line mime_qp_ratio
                      mime_ascii_text_illegal mime_text_unicode_ratio mime_attachment
                      mime_bad_iso_charset)) {
            printf "M %s=%.6g\n", $k, $pms->{$k} || 0;
        }
    }
    for my $f (qw(missing_head_body_separator missing_mime_head_body_separator
                  missing_mime_headers truncated_header mime_epilogue_exists
                  mimepart_limit_exceeded)) {
        print "F $f\n" if $msg->{$f};
    }
    for my $l ($msg->get_all_headers(0, 0)) {
        print "D ", esc($l), "\n";
    }
    $pms->finish();
    $msg->finish();
}
