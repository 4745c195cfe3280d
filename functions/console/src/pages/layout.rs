//! The frame of every page (navigation, who is signed in, sign-out) and the small pieces pages
//! share: status badges, times, progress, notices.

use crate::api::ApiError;
use crate::assets;
use crate::session::{Session, CSRF_FIELD};
use crate::views::Counts;
use cellbridge_identity::role::Role;
use maud::{html, Markup, PreEscaped, DOCTYPE};

/// The navigation entry a page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Overview,
    Sims,
    BulkChanges,
    Devices,
    Admin,
    None,
}

/// The navigation: section, address, label, and the role it needs (the API refuses the rest).
const SECTIONS: [(Section, &str, &str, Role); 5] = [
    (Section::Overview, "/console", "Overview", Role::Viewer),
    (Section::Sims, "/console/sims", "SIMs", Role::Viewer),
    (
        Section::BulkChanges,
        "/console/bulk-changes",
        "Bulk changes",
        Role::Viewer,
    ),
    (
        Section::Devices,
        "/console/devices",
        "Devices",
        Role::Viewer,
    ),
    (Section::Admin, "/console/admin", "Admin", Role::Admin),
];

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · cellbridge" }
            @if let Some(styles) = assets::STYLES {
                link rel="stylesheet" href=(assets::url(styles));
            }
            @if let Some(script) = assets::SCRIPT {
                script type="module" src=(assets::url(script)) {}
            }
        }
    }
}

/// What a page follows on the live event stream (the subscription's filter), and how many of
/// the newest events it replays on load.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveFilter {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bulk_changes: Vec<String>,
    #[serde(skip)]
    pub history: u32,
    #[serde(skip)]
    pub follows: bool,
}

impl LiveFilter {
    /// A page that shows nothing live.
    pub fn none() -> Self {
        Self::default()
    }

    /// Events of `types`.
    pub fn of(types: &[&'static str]) -> Self {
        Self {
            types: types.to_vec(),
            follows: true,
            ..Self::default()
        }
    }
}

/// A page for a signed-in user.
pub fn frame(
    session: &Session,
    section: Section,
    title: &str,
    live: &LiveFilter,
    body: Markup,
) -> Markup {
    let filter = live
        .follows
        .then(|| serde_json::to_string(live).unwrap_or_default());
    let identity = &session.identity;
    let role = Role::ALL
        .into_iter()
        .rev()
        .find(|role| identity.roles.allows(*role));
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body data-tenant=(identity.tenant.as_str()) data-live-url=(session.live_url) data-csrf=(session.csrf()) {
                a.skip-link href="#content" { "Skip to content" }
                aside.sidebar {
                    div.product { "cellbridge" }
                    nav aria-label="Console" {
                        ul {
                            @for (entry, href, label, needs) in SECTIONS {
                                @if identity.roles.allows(needs) {
                                li {
                                    @if entry == section {
                                        a href=(href) aria-current="page" { (label) }
                                    } @else {
                                        a href=(href) { (label) }
                                    }
                                }
                                }
                            }
                        }
                    }
                    p id="live-status" role="status" aria-live="polite" hidden {}
                    div.who {
                        strong data-testid="signed-in-user" { (identity.subject) }
                        span { (identity.tenant.as_str()) " · " (role.map_or("no role", Role::as_str)) }
                        form method="post" action="/console/sign-out" {
                            input type="hidden" name=(CSRF_FIELD) value=(session.csrf());
                            button.link type="submit" { "Sign out" }
                        }
                    }
                }
                main id="content" tabindex="-1" data-live-filter=[filter] data-live-history=[live.follows.then_some(live.history)] {
                    (body)
                }
            }
        }
    }
}

/// A page outside the signed-in frame (sign-in, errors before sign-in).
pub fn bare_page(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body.bare { (body) }
        }
    }
}

/// A status as a badge; the stylesheet colours it by `data-status` (so live updates recolour it
/// by setting the word), and the colour only repeats what the word says.
pub fn badge(status: &str) -> Markup {
    html! { span.badge data-status=(status) { (status) } }
}

/// A time from the API (RFC 3339, UTC): shown as given, made relative by the script.
pub fn when(at: &str) -> Markup {
    html! { time datetime=(at) data-relative { (at.replace('T', " ").trim_end_matches('Z')) " UTC" } }
}

/// A bulk change's progress: how many devices are done, as a bar and in words.
pub fn progress(counts: &Counts) -> Markup {
    let label = format!(
        "{} of {} done ({} failed)",
        counts.done(),
        counts.total,
        counts.failed
    );
    html! {
        div.progress {
            progress max=(counts.total.max(1)) value=(counts.done()) aria-label=(label) {}
            span data-progress-figures { (counts.done()) "/" (counts.total) }
            span.badge data-status="failed" data-progress-failed hidden[counts.failed == 0] { (counts.failed) " failed" }
        }
    }
}

/// Why a part of a page could not be shown, and what the user can do about it.
pub fn api_error(error: &ApiError) -> Markup {
    let advice = if error.is_retryable() {
        "Reload the page to try again; if this persists, the API may be down."
    } else {
        ""
    };
    html! {
        div.notice.error role="alert" {
            strong { "Could not load this: " }
            (error.to_string())
            @if !advice.is_empty() { " " (advice) }
        }
    }
}

/// What an empty list means, and what to do next.
pub fn empty(message: &str, next: Markup) -> Markup {
    html! { div.empty { p { (message) } (next) } }
}

/// A `<select>` whose options are `(value, label)`, with `current` selected.
pub fn select(name: &str, options: &[(&str, &str)], current: &str, invalid: bool) -> Markup {
    html! {
        select id=(name) name=(name) aria-invalid=(invalid) {
            @for (value, label) in options {
                @if *value == current {
                    option value=(value) selected { (label) }
                } @else {
                    option value=(value) { (label) }
                }
            }
        }
    }
}

/// The message the API gave about a form field, under it and tied to it for screen readers.
pub fn field_error(id: &str, message: Option<&str>) -> Markup {
    match message {
        Some(message) => {
            html! { span.field-error id={ (id) "-error" } { (message) } }
        }
        None => PreEscaped(String::new()),
    }
}
