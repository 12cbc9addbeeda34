/*
 * NAME
 *   bounce_class - the rule table and the matcher
 * DESCRIPTION
 *   Order is meaning: the first matching rule wins, so a provider's own
 *   phrase comes before the generic word it contains ("blocked using
 *   zen.spamhaus.org" is reputation although it says "spam"; "temporarily
 *   rate limited due to IP reputation" is reputation although it says "rate
 *   limited"). The enhanced codes that name the address itself (x.1.1,
 *   x.1.2, x.1.3, x.1.10, x.2.2) and the connection and name-service
 *   phrases of DSNs come before the generic words, because a reply or a
 *   DSN often carries a host name ("mx.spamfilter.example said: 550 5.1.1
 *   user unknown"). The other enhanced codes come after the words (5.7.1 is
 *   used for spam, blocklists and policy alike: only the text tells them
 *   apart), and bare reply codes last. The sources (`src`)
 *   are keys of the list in docs/feedback.md. Patterns are lower case: the
 *   text is lowered once per call and searched with memmem.
 */
#include "lib/bounce_class.h"

#include <assert.h>
#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

static const char *const class_names[BOUNCE_CLASS_COUNT] = {
    [BOUNCE_BAD_MAILBOX] = "bad-mailbox",
    [BOUNCE_BAD_DOMAIN] = "bad-domain",
    [BOUNCE_INACTIVE] = "inactive-mailbox",
    [BOUNCE_MAILBOX_FULL] = "mailbox-full",
    [BOUNCE_POLICY] = "policy-related",
    [BOUNCE_SPAM] = "spam-related",
    [BOUNCE_CONTENT] = "content-related",
    [BOUNCE_REPUTATION] = "reputation",
    [BOUNCE_RATE_LIMITED] = "rate-limited",
    [BOUNCE_TLS] = "tls",
    [BOUNCE_DNS] = "dns",
    [BOUNCE_PROTOCOL] = "protocol",
    [BOUNCE_OTHER] = "other",
};

/* a text rule (optionally also restricted by code class and enhanced status), with its example reply */
#define TXT(cls, code, dsn, text, src, exc, exd, ext)                                                                  \
    {                                                                                                                  \
        cls, code, dsn, text, src, exc, exd, ext                                                                       \
    }
/* an enhanced-status rule */
#define DSN(cls, dsn, src, exc, exd, ext)                                                                              \
    {                                                                                                                  \
        cls, 0, dsn, NULL, src, exc, exd, ext                                                                          \
    }
/* a reply-code rule */
#define CODE(cls, code, src, ext)                                                                                      \
    {                                                                                                                  \
        cls, code, NULL, NULL, src, code, "", ext                                                                      \
    }

static const struct bounce_rule rules[] = {
    /* ---- provider phrases: Gmail (support.google.com/a/answer/3726730) ---- */
    TXT(BOUNCE_BAD_MAILBOX, 5, NULL, "account that you tried to reach does not exist", "gmail", 550, "5.1.1",
        "550-5.1.1 The email account that you tried to reach does not exist. Please try double-checking the "
        "recipient's email address for typos or unnecessary spaces. - gsmtp"),
    TXT(BOUNCE_INACTIVE, 0, NULL, "account that you tried to reach is disabled", "gmail", 550, "5.2.1",
        "550-5.2.1 The email account that you tried to reach is disabled. - gsmtp"),
    TXT(BOUNCE_INACTIVE, 0, NULL, "account that you tried to reach is inactive", "gmail", 550, "5.2.1",
        "550 5.2.1 The email account that you tried to reach is inactive and can't receive new messages. - gsmtp"),
    TXT(BOUNCE_MAILBOX_FULL, 0, NULL, "account that you tried to reach is over quota", "gmail", 452, "4.2.2",
        "452-4.2.2 The email account that you tried to reach is over quota. Please direct the recipient to "
        "https://support.google.com/mail/?p=OverQuotaTemp - gsmtp"),
    TXT(BOUNCE_RATE_LIMITED, 0, NULL, "receiving mail at a rate that prevents", "gmail", 450, "4.2.1",
        "450-4.2.1 The user you are trying to contact is receiving mail at a rate that prevents additional "
        "messages from being delivered. Please resend your message at a later time. - gsmtp"),
    TXT(BOUNCE_RATE_LIMITED, 0, NULL, "is receiving mail too quickly", "gmail", 450, "4.2.1",
        "450 4.2.1 The user you are trying to contact is receiving mail too quickly. Please resend your message "
        "at a later time. - gsmtp"),
    TXT(BOUNCE_CONTENT, 0, NULL, "nature of the content and/or the links", "gmail", 421, "4.7.0",
        "421-4.7.0 [192.0.2.10] Our system has detected that this message is suspicious due to the nature of the "
        "content and/or the links within. To best protect our users from spam, the message has been blocked. - gsmtp"),
    TXT(BOUNCE_CONTENT, 0, NULL, "content presents a potential security issue", "gmail", 552, "5.7.0",
        "552-5.7.0 This message was blocked because its content presents a potential security issue. - gsmtp"),
    TXT(BOUNCE_RATE_LIMITED, 0, NULL, "unusual rate of unsolicited mail", "gmail", 421, "4.7.28",
        "421-4.7.28 [192.0.2.10] Our system has detected an unusual rate of unsolicited mail originating from "
        "your IP address. To protect our users from spam, mail sent from your IP address has been temporarily rate "
        "limited. - gsmtp"),
    TXT(BOUNCE_REPUTATION, 0, NULL, "very low reputation of the sending", "gmail", 550, "5.7.1",
        "550-5.7.1 [192.0.2.10] Our system has detected that this message is likely suspicious due to the very "
        "low reputation of the sending IP address. - gsmtp"),
    TXT(BOUNCE_POLICY, 0, NULL, "not in whitelist for rcpt domain", "gmail", 421, "4.7.0",
        "421 4.7.0 IP not in whitelist for RCPT domain, closing connection. - gsmtp"),
    TXT(BOUNCE_TLS, 0, NULL, "tls required for rcpt domain", "gmail", 421, "4.7.0",
        "421 4.7.0 TLS required for RCPT domain, closing connection. - gsmtp"),
    TXT(BOUNCE_DNS, 0, NULL, "does not have a ptr record", "gmail", 550, "5.7.25",
        "550-5.7.25 [192.0.2.10] The IP address sending this message does not have a PTR record setup, or the "
        "corresponding forward DNS entry does not point to the sending IP. - gsmtp"),
    TXT(BOUNCE_POLICY, 0, NULL, "sender is unauthenticated", "gmail", 550, "5.7.26",
        "550-5.7.26 This mail has been blocked because the sender is unauthenticated. Gmail requires all senders "
        "to authenticate with either SPF or DKIM. - gsmtp"),
    TXT(BOUNCE_POLICY, 0, NULL, "fails to pass authentication checks", "gmail", 421, "4.7.0",
        "421-4.7.0 This message does not have authentication information or fails to pass authentication checks. "
        "To best protect our users from spam, the message has been blocked. - gsmtp"),
    TXT(BOUNCE_SPAM, 0, NULL, "likely unsolicited mail", "gmail", 550, "5.7.1",
        "550-5.7.1 [192.0.2.10] Our system has detected that this message is likely unsolicited mail. To reduce "
        "the amount of spam sent to Gmail, this message has been blocked. - gsmtp"),

    /* ---- Yahoo / AOL (postmaster.yahooinc.com/error-codes) ---- */
    TXT(BOUNCE_BAD_MAILBOX, 0, NULL, "user doesn't have a", "yahoo", 554, "",
        "554 delivery error: dd This user doesn't have a yahoo.com account (someone@yahoo.com) [0] - "
        "mta1000.mail.gq1.yahoo.com"),
    TXT(BOUNCE_MAILBOX_FULL, 0, NULL, "this account is over quota", "yahoo", 554, "",
        "554 delivery error: dd Sorry, your message to someone@yahoo.com cannot be delivered. This account is "
        "over quota."),
    TXT(BOUNCE_RATE_LIMITED, 0, NULL, "unexpected volume or user complaints", "yahoo", 421, "4.7.0",
        "421 4.7.0 [TSS04] Messages from 192.0.2.10 temporarily deferred due to unexpected volume or user "
        "complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes"),
    TXT(BOUNCE_REPUTATION, 0, NULL, "permanently deferred", "yahoo", 553, "5.7.2",
        "553 5.7.2 [TSS09] All messages from 192.0.2.10 will be permanently deferred; Retrying will NOT succeed. "
        "See https://postmaster.yahooinc.com/error-codes"),
    TXT(BOUNCE_REPUTATION, 0, NULL, "excessive unknown recipients", "yahoo", 451, "",
        "451 VS1-IP Excessive unknown recipients - possible Open Relay (#4.1.8)"),
    TXT(BOUNCE_POLICY, 0, NULL, "not accepted for policy reasons", "yahoo", 554, "5.7.9",
        "554 5.7.9 Message not accepted for policy reasons. See https://postmaster.yahooinc.com/error-codes"),
    TXT(BOUNCE_DNS, 0, NULL, "unresolvable rfc.5321 from domain", "yahoo", 451, "",
        "451 Message temporarily deferred due to unresolvable RFC.5321 from domain"),
    TXT(BOUNCE_RATE_LIMITED, 0, NULL, "max message per connection", "yahoo", 421, "",
        "421 Max message per connection reached, closing transmission channel"),
    TXT(BOUNCE_RATE_LIMITED, 0, NULL, "resources temporarily unavailable", "yahoo", 451, "",
        "451 mta1000.mail.yahoo.com Resources temporarily unavailable. Please try again later [#4.16.1]."),

    /* ---- Microsoft: Outlook.com and Exchange Online (learn.microsoft.com NDR reference) ---- */
    TXT(BOUNCE_BAD_MAILBOX, 5, NULL, "recipient address rejected: access denied", "microsoft", 550, "5.4.1",
        "550 5.4.1 Recipient address rejected: Access denied. AS(201806281) [BN8NAM12FT003.eop-nam12.prod]"),
    TXT(BOUNCE_BAD_MAILBOX, 5, NULL, "requested action not taken: mailbox unavailable", "microsoft", 550, "5.5.0",
        "550 5.5.0 Requested action not taken: mailbox unavailable (S2017062302)."),
    TXT(BOUNCE_REPUTATION, 0, NULL, "due to ip reputation", "microsoft", 451, "4.7.650",
        "451 4.7.650 The mail server [192.0.2.10] has been temporarily rate limited due to IP reputation. For "
        "e-mail delivery information, see https://postmaster.live.com (S775)"),
    TXT(BOUNCE_REPUTATION, 0, NULL, "banned sending ip", "microsoft", 550, "5.7.606",
        "550 5.7.606 Access denied, banned sending IP [192.0.2.10]. To request removal from this list please "
        "visit https://sender.office.com/ (AS16012609)"),
    TXT(BOUNCE_REPUTATION, 0, NULL, "traffic not accepted from this ip", "microsoft", 550, "5.7.708",
        "550 5.7.708 Access denied, traffic not accepted from this IP."),
    TXT(BOUNCE_REPUTATION, 0, NULL, "network is on our block list", "microsoft", 550, "5.7.1",
        "550 5.7.1 Unfortunately, messages from [192.0.2.10] weren't sent. Please contact your Internet service "
        "provider since part of their network is on our block list (S3150)."),
    TXT(BOUNCE_SPAM, 0, NULL, "detected as spam", "microsoft", 550, "5.7.350",
        "550 5.7.350 Remote server returned message detected as spam"),
    TXT(BOUNCE_POLICY, 0, NULL, "does not allow external forwarding", "microsoft", 550, "5.7.520",
        "550 5.7.520 Access denied, Your organization does not allow external forwarding."),
    TXT(BOUNCE_RATE_LIMITED, 0, NULL, "server busy", "microsoft", 451, "4.7.500",
        "451 4.7.500 Server busy. Please try again later from [192.0.2.10]. (AS77712344)"),
    TXT(BOUNCE_RATE_LIMITED, 0, NULL, "concurrent connections", "microsoft", 421, "4.3.2",
        "421 4.3.2 The maximum number of concurrent connections has exceeded a limit, closing transmission "
        "channel"),

    /* ---- enhanced status codes that name the address itself: they decide whatever the words say
       (a spam filter's host name in the text must not make a 5.1.1 spam-related) ---- */
    DSN(BOUNCE_BAD_MAILBOX, "x.1.1", "rfc3463", 550, "5.1.1", "550 5.1.1 <someone@example.net>: no"),
    DSN(BOUNCE_BAD_DOMAIN, "x.1.2", "rfc3463", 550, "5.1.2", "550 5.1.2 bad destination system"),
    DSN(BOUNCE_BAD_MAILBOX, "x.1.3", "rfc3463", 553, "5.1.3", "553 5.1.3 bad destination mailbox address syntax"),
    DSN(BOUNCE_BAD_DOMAIN, "x.1.10", "rfc7505", 556, "5.1.10", "556 5.1.10 recipient address has null MX"),
    DSN(BOUNCE_MAILBOX_FULL, "x.2.2", "rfc3463", 452, "4.2.2", "452 4.2.2 insufficient space in the mailbox"),

    /* ---- connection and name service failures, as Postfix words them in a DSN: before any word a host
       name in them may contain ("connect to mx.spamfilter.example: Connection refused") ---- */
    TXT(BOUNCE_PROTOCOL, 0, NULL, "connection refused", "postfix", 0, "4.4.1",
        "connect to mx.example.net[192.0.2.25]:25: Connection refused"),
    TXT(BOUNCE_PROTOCOL, 0, NULL, "timed out", "postfix", 0, "4.4.2",
        "conversation with mx.example.net[192.0.2.25] timed out while receiving the initial server greeting"),
    TXT(BOUNCE_PROTOCOL, 0, NULL, "lost connection", "postfix", 0, "4.4.2",
        "lost connection with mx.example.net[192.0.2.25] while sending end of data"),
    TXT(BOUNCE_DNS, 0, NULL, "sender address rejected: domain not found", "postfix", 450, "4.1.8",
        "450 4.1.8 <bounces@sender.example>: Sender address rejected: Domain not found"),
    TXT(BOUNCE_BAD_DOMAIN, 0, "5.", "host or domain name not found", "postfix", 0, "5.4.4",
        "Host or domain name not found. Name service error for name=nowhere.example type=MX: Host not found"),
    TXT(BOUNCE_DNS, 0, NULL, "name service error", "postfix", 0, "4.4.3",
        "Host or name service lookup failure: Name service error for name=mx.example.net type=A: Host not found, "
        "try again"),

    /* ---- generic phrases, the vocabulary of KumoMTA's and PowerMTA's categories ---- */
    /* about the recipient first: a refusal that names the mailbox or domain is about it */
    /* mailbox full */
    TXT(BOUNCE_MAILBOX_FULL, 0, NULL, "over quota", "powermta", 552, "", "552 User mailbox is over quota"),
    TXT(BOUNCE_MAILBOX_FULL, 0, NULL, "quota exceeded", "powermta", 452, "", "452 Mailbox quota exceeded"),
    TXT(BOUNCE_MAILBOX_FULL, 0, NULL, "mailbox full", "powermta", 452, "", "452 Mailbox full"),
    TXT(BOUNCE_MAILBOX_FULL, 0, NULL, "mailbox is full", "powermta", 552, "",
        "552 Mailbox is full / Blocks limit exceeded / Inode limit exceeded"),
    TXT(BOUNCE_MAILBOX_FULL, 0, NULL, "exceeded storage allocation", "rfc5321", 552, "",
        "552 Requested mail action aborted: exceeded storage allocation"),
    /* inactive */
    TXT(BOUNCE_INACTIVE, 0, NULL, "account is disabled", "powermta", 550, "", "550 This account is disabled"),
    TXT(BOUNCE_INACTIVE, 0, NULL, "account has been disabled", "powermta", 550, "5.2.1",
        "550 5.2.1 The account has been disabled or discontinued"),
    TXT(BOUNCE_INACTIVE, 0, NULL, "inactive", "powermta", 550, "", "550 Mailbox inactive for more than 12 months"),
    TXT(BOUNCE_INACTIVE, 0, NULL, "no longer active", "powermta", 550, "",
        "550 Recipient is no longer active at this organisation"),
    TXT(BOUNCE_INACTIVE, 0, NULL, "account suspended", "kumomta", 550, "", "550 User account suspended"),
    TXT(BOUNCE_INACTIVE, 0, NULL, "account expired", "powermta", 550, "", "550 Account expired"),
    /* bad domain (before bad mailbox: "recipient domain not found" is about the domain) */
    TXT(BOUNCE_BAD_DOMAIN, 0, NULL, "domain does not exist", "powermta", 550, "",
        "550 Recipient domain does not exist"),
    TXT(BOUNCE_BAD_DOMAIN, 0, NULL, "no such domain", "powermta", 550, "", "550 No such domain at this location"),
    TXT(BOUNCE_BAD_DOMAIN, 0, NULL, "unrouteable address", "kumomta", 550, "", "550 Unrouteable address"),
    TXT(BOUNCE_BAD_DOMAIN, 0, NULL, "does not accept mail", "rfc7505", 556, "",
        "556 Recipient domain nowhere.example does not accept mail (null MX)"),
    /* bad mailbox */
    TXT(BOUNCE_BAD_MAILBOX, 0, NULL, "user unknown", "postfix", 550, "",
        "550 <someone@example.net>: Recipient address rejected: User unknown in virtual mailbox table"),
    TXT(BOUNCE_BAD_MAILBOX, 0, NULL, "unknown user", "powermta", 550, "", "550 Unknown user"),
    TXT(BOUNCE_BAD_MAILBOX, 0, NULL, "no such user", "powermta", 550, "", "550 No such user here"),
    TXT(BOUNCE_BAD_MAILBOX, 0, NULL, "unknown recipient", "powermta", 550, "", "550 Unknown recipient"),
    TXT(BOUNCE_BAD_MAILBOX, 0, NULL, "recipient unknown", "powermta", 550, "", "550 Recipient unknown"),
    TXT(BOUNCE_BAD_MAILBOX, 0, NULL, "mailbox not found", "powermta", 550, "",
        "550 Requested action not taken: mailbox not found"),
    TXT(BOUNCE_BAD_MAILBOX, 0, NULL, "no such mailbox", "powermta", 550, "", "550 No such mailbox"),
    TXT(BOUNCE_BAD_MAILBOX, 0, NULL, "invalid recipient", "kumomta", 550, "", "550 Invalid recipient"),
    TXT(BOUNCE_BAD_MAILBOX, 0, NULL, "invalid mailbox", "kumomta", 550, "", "550 Invalid mailbox"),
    TXT(BOUNCE_BAD_MAILBOX, 0, NULL, "recipient not found", "kumomta", 550, "", "550 Recipient not found"),
    TXT(BOUNCE_BAD_MAILBOX, 0, NULL, "address does not exist", "powermta", 550, "", "550 The address does not exist"),
    TXT(BOUNCE_BAD_MAILBOX, 0, NULL, "mailbox name not allowed", "rfc5321", 553, "",
        "553 Requested action not taken: mailbox name not allowed"),
    /* reputation: blocklists named, or said to be one */
    TXT(BOUNCE_REPUTATION, 0, NULL, "spamhaus", "kumomta", 554, "5.7.1",
        "554 5.7.1 Service unavailable; Client host [192.0.2.10] blocked using zen.spamhaus.org"),
    TXT(BOUNCE_REPUTATION, 0, NULL, "spamcop", "kumomta", 554, "",
        "554 Blocked - see https://www.spamcop.net/bl.shtml?192.0.2.10"),
    TXT(BOUNCE_REPUTATION, 0, NULL, "barracuda", "kumomta", 554, "",
        "554 Service unavailable; Client host [192.0.2.10] blocked using Barracuda Reputation"),
    TXT(BOUNCE_REPUTATION, 0, NULL, "blocked using", "postfix", 554, "5.7.1",
        "554 5.7.1 Service unavailable; Client host [192.0.2.10] blocked using bl.example.net"),
    TXT(BOUNCE_REPUTATION, 0, NULL, "blacklist", "powermta", 550, "", "550 Your IP 192.0.2.10 is blacklisted"),
    TXT(BOUNCE_REPUTATION, 0, NULL, "blocklist", "powermta", 550, "5.7.1",
        "550 5.7.1 Rejected: sender IP is on a blocklist"),
    TXT(BOUNCE_REPUTATION, 0, NULL, "block list", "powermta", 550, "",
        "550 Mail refused: your server is on our block list"),
    TXT(BOUNCE_REPUTATION, 0, NULL, "listed at", "powermta", 550, "5.7.1",
        "550 5.7.1 192.0.2.10 is listed at dnsbl.example.org"),
    TXT(BOUNCE_REPUTATION, 0, NULL, "reputation", "kumomta", 550, "5.7.1",
        "550 5.7.1 Message rejected because of poor sender reputation"),
    /* content, before spam: "virus" and "attachment" replies often say "spam" as well */
    TXT(BOUNCE_CONTENT, 0, NULL, "virus", "powermta", 554, "5.7.1",
        "554 5.7.1 Message rejected: virus found in message (spam filter)"),
    TXT(BOUNCE_CONTENT, 0, NULL, "malware", "kumomta", 550, "", "550 Message contains malware"),
    TXT(BOUNCE_CONTENT, 0, NULL, "attachment", "kumomta", 552, "5.7.0",
        "552 5.7.0 Our system detected an illegal attachment on your message"),
    TXT(BOUNCE_CONTENT, 0, NULL, "message size exceeds", "powermta", 552, "5.3.4",
        "552 5.3.4 Message size exceeds fixed limit"),
    TXT(BOUNCE_CONTENT, 0, NULL, "message too large", "powermta", 552, "", "552 Message too large"),
    TXT(BOUNCE_CONTENT, 0, NULL, "message content rejected", "powermta", 550, "", "550 Message content rejected"),
    /* spam */
    TXT(BOUNCE_SPAM, 0, NULL, "spam", "powermta", 550, "5.7.1",
        "550 5.7.1 Message rejected as spam by Content Filtering"),
    TXT(BOUNCE_SPAM, 0, NULL, "unsolicited", "powermta", 550, "", "550 Unsolicited bulk mail is not accepted here"),
    /* rate */
    TXT(BOUNCE_RATE_LIMITED, 0, NULL, "rate limit", "kumomta", 421, "4.7.0",
        "421 4.7.0 Too much mail from 192.0.2.10: rate limited, try again later"),
    TXT(BOUNCE_RATE_LIMITED, 0, NULL, "too many connections", "kumomta", 421, "",
        "421 Too many connections from your IP"),
    TXT(BOUNCE_RATE_LIMITED, 0, NULL, "too many messages", "kumomta", 450, "4.7.1",
        "450 4.7.1 Too many messages in this session, slow down"),
    TXT(BOUNCE_RATE_LIMITED, 0, NULL, "throttl", "kumomta", 451, "",
        "451 Message throttled: sending rate of 192.0.2.10 too high"),
    /* tls */
    TXT(BOUNCE_TLS, 0, NULL, "starttls", "rfc3207", 530, "5.7.0", "530 5.7.0 Must issue a STARTTLS command first"),
    TXT(BOUNCE_TLS, 0, NULL, "tls", "postfix", 454, "4.7.0", "454 4.7.0 TLS not available due to local problem"),
    TXT(BOUNCE_TLS, 0, NULL, "certificate", "postfix", 0, "4.7.5", "Server certificate not verified"),
    /* policy */
    TXT(BOUNCE_POLICY, 0, NULL, "dmarc", "kumomta", 550, "5.7.1",
        "550 5.7.1 Email rejected per DMARC policy for sender.example"),
    TXT(BOUNCE_POLICY, 0, NULL, "spf", "kumomta", 550, "5.7.23",
        "550 5.7.23 The message was rejected because of Sender Policy Framework violation (SPF fail)"),
    TXT(BOUNCE_POLICY, 0, NULL, "dkim", "kumomta", 550, "5.7.20", "550 5.7.20 No passing DKIM signature found"),
    TXT(BOUNCE_POLICY, 0, NULL, "relay access denied", "postfix", 554, "5.7.1",
        "554 5.7.1 <someone@example.net>: Relay access denied"),
    TXT(BOUNCE_POLICY, 0, NULL, "relaying", "powermta", 550, "", "550 Relaying denied"),
    TXT(BOUNCE_POLICY, 0, NULL, "unable to relay", "microsoft", 550, "5.7.54",
        "550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain"),
    TXT(BOUNCE_POLICY, 0, NULL, "policy", "powermta", 550, "", "550 Rejected by local policy"),
    /* dns, as the receiver says it */
    TXT(BOUNCE_DNS, 0, NULL, "reverse dns", "kumomta", 550, "",
        "550 Client host rejected: cannot find your reverse DNS hostname"),
    /* protocol */
    TXT(BOUNCE_PROTOCOL, 0, NULL, "command not recognized", "rfc5321", 500, "5.5.1",
        "500 5.5.1 Command not recognized"),
    TXT(BOUNCE_PROTOCOL, 0, NULL, "syntax error", "rfc5321", 501, "5.5.4",
        "501 5.5.4 Syntax error in parameters or arguments"),
    TXT(BOUNCE_RATE_LIMITED, 4, NULL, "try again later", "kumomta", 451, "4.3.0",
        "451 4.3.0 Temporary local problem, try again later"),

    /* ---- the other enhanced status codes (RFC 3463; 4.x.x and 5.x.x alike) ---- */
    DSN(BOUNCE_INACTIVE, "x.1.6", "rfc3463", 551, "5.1.6", "551 5.1.6 destination mailbox has moved"),
    DSN(BOUNCE_DNS, "x.1.8", "rfc3463", 553, "5.1.8", "553 5.1.8 bad sender's system address"),
    DSN(BOUNCE_INACTIVE, "x.2.1", "rfc3463", 550, "5.2.1", "550 5.2.1 mailbox disabled, not accepting messages"),
    DSN(BOUNCE_CONTENT, "x.2.3", "rfc3463", 552, "5.2.3", "552 5.2.3 message length exceeds administrative limit"),
    DSN(BOUNCE_CONTENT, "x.3.4", "rfc3463", 552, "5.3.4", "552 5.3.4 message too big for system"),
    DSN(BOUNCE_PROTOCOL, "x.4.1", "rfc3463", 0, "4.4.1", "no answer from host"),
    DSN(BOUNCE_PROTOCOL, "x.4.2", "rfc3463", 421, "4.4.2", "421 4.4.2 bad connection"),
    DSN(BOUNCE_DNS, "x.4.3", "rfc3463", 451, "4.4.3", "451 4.4.3 directory server failure"),
    DSN(BOUNCE_DNS, "x.4.4", "rfc3463", 550, "5.4.4", "550 5.4.4 unable to route"),
    DSN(BOUNCE_RATE_LIMITED, "x.4.5", "rfc3463", 451, "4.4.5", "451 4.4.5 mail system congestion"),
    DSN(BOUNCE_PROTOCOL, "x.5.", "rfc3463", 503, "5.5.1", "503 5.5.1 bad sequence of commands"),
    DSN(BOUNCE_CONTENT, "x.6.", "rfc3463", 554, "5.6.0", "554 5.6.0 media error"),
    DSN(BOUNCE_TLS, "x.7.10", "rfc3463", 523, "5.7.10", "523 5.7.10 encryption needed"),
    DSN(BOUNCE_TLS, "x.7.5", "rfc3463", 554, "5.7.5", "554 5.7.5 cryptographic failure"),
    DSN(BOUNCE_CONTENT, "x.7.7", "rfc3463", 554, "5.7.7", "554 5.7.7 message integrity failure"),
    DSN(BOUNCE_POLICY, "x.7.", "rfc3463", 550, "5.7.1", "550 5.7.1 delivery not authorized, message refused"),

    /* ---- reply codes alone (RFC 5321 4.2.2) ---- */
    CODE(BOUNCE_PROTOCOL, 500, "rfc5321", "500 what?"),
    CODE(BOUNCE_PROTOCOL, 501, "rfc5321", "501 what?"),
    CODE(BOUNCE_PROTOCOL, 502, "rfc5321", "502 not implemented"),
    CODE(BOUNCE_PROTOCOL, 503, "rfc5321", "503 out of order"),
    CODE(BOUNCE_PROTOCOL, 504, "rfc5321", "504 parameter not implemented"),
    CODE(BOUNCE_BAD_MAILBOX, 551, "rfc5321", "551 user not local"),
    CODE(BOUNCE_MAILBOX_FULL, 552, "rfc5321", "552 aborted"),
    CODE(BOUNCE_BAD_MAILBOX, 553, "rfc5321", "553 not taken"),
};

#define NRULES (sizeof(rules) / sizeof(rules[0]))

const char *bounce_class_name(enum bounce_class_id id)
{
    return (unsigned)id < BOUNCE_CLASS_COUNT ? class_names[id] : class_names[BOUNCE_OTHER];
}

int bounce_class_parse(const char *name, size_t len)
{
    for (int i = 0; i < BOUNCE_CLASS_COUNT; i++)
        if (strlen(class_names[i]) == len && strncmp(class_names[i], name, len) == 0)
            return i;
    return -1;
}

const struct bounce_rule *bounce_rules(size_t *n)
{
    *n = NRULES;
    return rules;
}

/* code_ok - the rule's code condition holds for code */
static bool code_ok(int want, int code)
{
    if (want == 0)
        return true;
    if (want < 10)
        return code / 100 == want;
    return code == want;
}

/*
 * dsn_ok - the rule's enhanced-status condition: "x.1.1" is subject.detail
 * in either class; a pattern ending in '.' is a prefix ("x.5." any detail);
 * otherwise the whole code must be equal ("x.1.1" is not "x.1.10")
 */
static bool dsn_ok(const char *want, const char *dsn)
{
    if (want == NULL)
        return true;
    if (dsn == NULL || dsn[0] == '\0')
        return false;
    if (want[0] == 'x') {
        if (dsn[0] != '4' && dsn[0] != '5' && dsn[0] != '2')
            return false;
        want++;
        dsn++;
    }
    size_t wl = strlen(want);
    if (want[wl - 1] == '.')
        return strncmp(dsn, want, wl) == 0;
    return strcmp(dsn, want) == 0;
}

/*
 * pair - the bit of two adjacent bytes in a text's pair filter: a pattern
 * whose first or last two bytes are not a pair of the text cannot be in it,
 * so most rules are passed over without a memmem (the walk of the whole
 * table, a reply no phrase matches, is the common case for deferrals)
 */
static unsigned pair(unsigned char a, unsigned char b)
{
    return ((unsigned)a << 4 ^ b) & 4095u;
}

static bool has_pair(const uint64_t *f, unsigned char a, unsigned char b)
{
    unsigned h = pair(a, b);
    return (f[h >> 6] >> (h & 63)) & 1u;
}

int bounce_class_rule(int code, const char *enhanced, const char *text, size_t text_len)
{
    char low[BOUNCE_TEXT_MAX];
    uint64_t pairs[4096 / 64] = {0};
    size_t n = text == NULL ? 0 : text_len < sizeof(low) ? text_len : sizeof(low);
    for (size_t i = 0; i < n; i++) {
        low[i] = (char)tolower((unsigned char)text[i]);
        if (i > 0) {
            unsigned h = pair((unsigned char)low[i - 1], (unsigned char)low[i]);
            pairs[h >> 6] |= 1ull << (h & 63);
        }
    }
    for (size_t r = 0; r < NRULES; r++) {
        const struct bounce_rule *x = &rules[r];
        if (!code_ok(x->code, code) || !dsn_ok(x->dsn, enhanced))
            continue;
        if (x->text != NULL) {
            size_t pl = strlen(x->text); /* every pattern has two bytes at least (tests/lib/test_bounce_class.c) */
            const unsigned char *t = (const unsigned char *)x->text;
            if (!has_pair(pairs, t[0], t[1]) || !has_pair(pairs, t[pl - 2], t[pl - 1]) ||
                memmem(low, n, x->text, pl) == NULL)
                continue;
        }
        return (int)r;
    }
    return -1;
}

enum bounce_class_id bounce_classify(int code, const char *enhanced, const char *text, size_t text_len)
{
    int r = bounce_class_rule(code, enhanced, text, text_len);
    return r < 0 ? BOUNCE_OTHER : rules[r].cls;
}

const char *bounce_class(int code, const char *enhanced, const char *text, size_t text_len)
{
    return class_names[bounce_classify(code, enhanced, text, text_len)];
}
