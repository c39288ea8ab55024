//! The words a proposal reads tool names, descriptions and argument names
//! by: what names danger, content others wrote, destinations, amounts.

#[allow(unused_imports)]
use super::*;

/// Words in a name that make any tool critical: it reads or changes a
/// secret, or acts with an administrator's authority.
pub(in crate::cli::manifest::propose) const DANGER_NOUNS: &[&str] = &["password", "passphrase", "passwd", "secret", "credential", "key", "apikey", "admin", "administrator", "env"];

/// Prepositions end the object of a name (`list_users_in_channel` lists users).
pub(in crate::cli::manifest::propose) const PREPOSITIONS: &[&str] = &["in", "of", "for", "from", "by", "with", "to", "on", "at", "as", "into", "about", "per", "and", "or"];

/// What other people write, by kind: the nouns that name it, whether it is
/// the user's private data (reading it is medium risk), and the keys of such
/// records that the system fills rather than the writer.
pub(in crate::cli::manifest::propose) struct Content {
    pub(in crate::cli::manifest::propose) what: &'static str,
    pub(in crate::cli::manifest::propose) nouns: &'static [&'static str],
    /// People write it whoever keeps it: no "from our catalogue" makes a
    /// review or a message the server's own words.
    pub(in crate::cli::manifest::propose) by_people: bool,
    pub(in crate::cli::manifest::propose) private: bool,
    /// Keys the system, not the writer, fills in such records.
    pub(in crate::cli::manifest::propose) system_keys: &'static [&'static str],
    /// The few of them a reviewer would start from when there is no schema.
    pub(in crate::cli::manifest::propose) typical_keys: &'static [&'static str],
}

pub(in crate::cli::manifest::propose) const CONTENTS: &[Content] = &[
    Content {
        what: "mail",
        nouns: &["mail", "email", "inbox", "mailbox", "draft"],
        by_people: true,
        private: true,
        system_keys: &["from", "sender", "received", "received_at", "sent_at", "read", "timestamp", "date"],
        typical_keys: &["id", "date", "from", "sender"],
    },
    Content {
        what: "messages",
        nouns: &["message", "dm", "chat", "conversation", "thread", "reply", "replies", "notification"],
        by_people: true,
        private: true,
        system_keys: &["sender", "from", "author", "user", "channel", "timestamp", "date", "sent_at"],
        typical_keys: &["id", "timestamp", "sender", "channel"],
    },
    Content {
        what: "web pages",
        nouns: &["web", "webpage", "page", "website", "site", "url", "html", "internet", "article", "news", "feed", "rss", "wiki", "browser"],
        by_people: true,
        private: false,
        system_keys: &[],
        typical_keys: &[],
    },
    Content {
        what: "files and documents",
        nouns: &["file", "document", "doc", "attachment", "drive", "note", "spreadsheet", "pdf"],
        by_people: false,
        private: true,
        system_keys: &["owner", "size", "last_modified", "modified", "modified_at", "mime_type"],
        typical_keys: &["id", "owner", "last_modified", "size"],
    },
    Content {
        what: "reviews, comments and posts",
        nouns: &["review", "comment", "feedback", "post", "tweet", "forum", "testimonial"],
        by_people: true,
        private: false,
        system_keys: &["rating", "date", "timestamp"],
        typical_keys: &["id", "date", "rating"],
    },
    Content {
        what: "calendar events",
        nouns: &["calendar", "event", "meeting", "appointment", "invitation"],
        by_people: false,
        private: true,
        system_keys: &["start", "end", "start_time", "end_time", "date", "organizer", "status"],
        typical_keys: &["id", "start_time", "end_time", "organizer"],
    },
    Content {
        what: "transactions",
        nouns: &["transaction", "payment", "transfer", "statement", "invoice", "receipt"],
        by_people: false,
        private: true,
        system_keys: &["date", "amount", "currency", "sender", "recipient", "counterparty", "iban", "balance", "status"],
        typical_keys: &["id", "date", "amount", "sender", "recipient"],
    },
    Content {
        what: "issues and tickets",
        nouns: &["issue", "ticket", "bug", "incident"],
        by_people: true,
        private: true,
        system_keys: &["number", "state", "status", "author", "user", "created_at", "updated_at", "closed_at"],
        typical_keys: &["id", "number", "state", "author", "created_at"],
    },
];

/// Nouns for what the server itself keeps: balances, profiles, directories,
/// metadata. A tool whose name ends on one returns the server's own records.
pub(in crate::cli::manifest::propose) const OWN_NOUNS: &[&str] = &[
    "balance", "iban", "info", "information", "profile", "metadata", "stats", "statistics", "size", "directory", "tree", "catalogue", "catalog", "user",
    "member", "account", "setting", "config", "configuration", "price", "day", "date", "time", "weather", "currency", "rate", "sum",
];

/// Phrases in a description that say other people wrote the output.
pub(in crate::cli::manifest::propose) const OTHERS_WROTE: &[&str] = &[
    "written by", "posted by", "sent by", "sent to you", "received", "third party", "third parties", "other party", "other parties", "other user",
    "other users", "other people", "others", "anyone", "external", "from the web", "from the internet", "web page", "webpage", "website", "guests",
];

/// Phrases that say the output is the server's own records.
pub(in crate::cli::manifest::propose) const OWN_RECORDS: &[&str] = &["catalogue", "catalog", "from the directory", "workspace directory", "company directory", "by the account holder", "you created", "you wrote"];

/// Argument names that address something on the network: even a read sends
/// data out through them (the URL of a fetch carries it).
pub(in crate::cli::manifest::propose) const NETWORK_ARGS: &[&str] = &["url", "uri", "link", "href", "endpoint", "webhook", "host", "hostname", "domain", "callback"];

/// Argument names that say who receives.
pub(in crate::cli::manifest::propose) const DESTINATION_ARGS: &[&str] = &[
    "to", "cc", "bcc", "recipient", "email", "address", "iban", "account", "phone", "participant", "attendee", "invitee", "payee", "beneficiary",
    "destination", "dest", "target",
];

/// Argument names that say where in a workspace: who or which channel.
pub(in crate::cli::manifest::propose) const PLACE_ARGS: &[&str] = &["channel", "user", "member", "group", "team", "room", "chat", "contact", "conversation"];

pub(in crate::cli::manifest::propose) const AMOUNT_ARGS: &[&str] = &["amount", "price", "total", "cost", "fee"];

pub(in crate::cli::manifest::propose) const PATH_ARGS: &[&str] = &["path", "file", "filename", "filepath", "dir", "directory", "folder", "source"];

/// A destination word followed by one of these names a record, not an
/// address (`email_id` is a message, `recipient_id` still a person).
pub(in crate::cli::manifest::propose) const REFERENCE_SUFFIXES: &[&str] = &["id", "ids", "uuid", "index"];

/// Destination words that still name a person or a place with a reference suffix.
pub(in crate::cli::manifest::propose) const PERSON_WORDS: &[&str] = &["recipient", "account", "participant", "attendee", "invitee", "payee", "beneficiary"];

/// Words in a description that say a write moves money.
pub(in crate::cli::manifest::propose) const MONEY_WORDS: &[&str] = &["payment", "payments", "pay", "pays", "money", "funds", "charge", "charges", "card on file", "purchase"];

/// Nouns of what a directory lists: entries the system names and keeps.
pub(in crate::cli::manifest::propose) const DIRECTORY_NOUNS: &[&str] = &[
    "channel", "user", "member", "contact", "room", "group", "team", "folder", "calendar", "label", "tag", "project", "repository", "repo", "space", "workspace",
];
