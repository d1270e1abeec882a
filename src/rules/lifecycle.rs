//! The alert lifecycle: states, the allowed-transition table and escalation.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::alert::Severity;

/// Where an alert is in its handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// Raised, nobody has looked yet (escalates when it stays here too long).
    New,
    /// An operator has seen it.
    Acknowledged,
    /// Sent to a police station / the case system for handling.
    Dispatched,
    /// The police station took the job (接警).
    Accepted,
    /// Officers are on the scene (到场).
    Arrived,
    /// Handled (terminal).
    Resolved,
    /// Judged not to be a real event (terminal).
    FalseAlarm,
}

impl AlertState {
    /// All states, in lifecycle order.
    pub const ALL: [AlertState; 7] = [
        AlertState::New,
        AlertState::Acknowledged,
        AlertState::Dispatched,
        AlertState::Accepted,
        AlertState::Arrived,
        AlertState::Resolved,
        AlertState::FalseAlarm,
    ];

    /// The snake_case name used in JSON, SQL and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::New => "new",
            AlertState::Acknowledged => "acknowledged",
            AlertState::Dispatched => "dispatched",
            AlertState::Accepted => "accepted",
            AlertState::Arrived => "arrived",
            AlertState::Resolved => "resolved",
            AlertState::FalseAlarm => "false_alarm",
        }
    }

    /// Parses a snake_case name.
    pub fn parse(s: &str) -> Option<AlertState> {
        AlertState::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// True for states nothing leaves.
    pub fn is_terminal(self) -> bool {
        matches!(self, AlertState::Resolved | AlertState::FalseAlarm)
    }
}

impl fmt::Display for AlertState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every allowed `(from, to)`. Skipping acknowledgement is allowed (an operator may dispatch or dismiss
/// straight from the feed); resolving needs someone to have looked (`acknowledged` or `dispatched`);
/// the police station moves a dispatched alert through `accepted` (接警) and `arrived` (到场) to
/// `resolved` (办结), and may skip steps it did not report; a dispatched alert may still turn out
/// false when the police arrive. Terminal states never move.
pub const ALLOWED_TRANSITIONS: &[(AlertState, AlertState)] = &[
    (AlertState::New, AlertState::Acknowledged),
    (AlertState::New, AlertState::Dispatched),
    (AlertState::New, AlertState::FalseAlarm),
    (AlertState::Acknowledged, AlertState::Dispatched),
    (AlertState::Acknowledged, AlertState::Resolved),
    (AlertState::Acknowledged, AlertState::FalseAlarm),
    (AlertState::Dispatched, AlertState::Accepted),
    (AlertState::Dispatched, AlertState::Arrived),
    (AlertState::Dispatched, AlertState::Resolved),
    (AlertState::Dispatched, AlertState::FalseAlarm),
    (AlertState::Accepted, AlertState::Arrived),
    (AlertState::Accepted, AlertState::Resolved),
    (AlertState::Accepted, AlertState::FalseAlarm),
    (AlertState::Arrived, AlertState::Resolved),
    (AlertState::Arrived, AlertState::FalseAlarm),
];

impl AlertState {
    /// The police station's steps (接警, 到场, 办结): what a dispatcher may set.
    pub fn is_police_step(self) -> bool {
        matches!(
            self,
            AlertState::Accepted | AlertState::Arrived | AlertState::Resolved
        )
    }

    /// Chinese label for the UI and messages.
    pub fn label_zh(self) -> &'static str {
        match self {
            AlertState::New => "待处理",
            AlertState::Acknowledged => "已确认",
            AlertState::Dispatched => "已派警",
            AlertState::Accepted => "已接警",
            AlertState::Arrived => "已到场",
            AlertState::Resolved => "已办结",
            AlertState::FalseAlarm => "误报",
        }
    }
}

/// True when `from → to` is in [`ALLOWED_TRANSITIONS`].
pub fn allowed(from: AlertState, to: AlertState) -> bool {
    ALLOWED_TRANSITIONS.contains(&(from, to))
}

/// The states `from` may move to.
pub fn next_states(from: AlertState) -> Vec<AlertState> {
    ALLOWED_TRANSITIONS
        .iter()
        .filter(|(f, _)| *f == from)
        .map(|(_, t)| *t)
        .collect()
}

/// One step up; `critical` stays.
pub fn raise(s: Severity) -> Severity {
    match s {
        Severity::Low => Severity::Medium,
        Severity::Medium => Severity::High,
        Severity::High | Severity::Critical => Severity::Critical,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_rejects_leaving_terminal_states_and_skipping_to_resolved() {
        for t in AlertState::ALL {
            assert!(!allowed(AlertState::Resolved, t));
            assert!(!allowed(AlertState::FalseAlarm, t));
            assert!(!allowed(t, AlertState::New));
        }
        assert!(!allowed(AlertState::New, AlertState::Resolved));
        assert!(allowed(AlertState::New, AlertState::Acknowledged));
        assert_eq!(
            next_states(AlertState::Dispatched),
            vec![
                AlertState::Accepted,
                AlertState::Arrived,
                AlertState::Resolved,
                AlertState::FalseAlarm
            ]
        );
        assert_eq!(
            next_states(AlertState::Arrived),
            vec![AlertState::Resolved, AlertState::FalseAlarm]
        );
        assert!(!allowed(AlertState::Acknowledged, AlertState::Accepted));
        assert!(!allowed(AlertState::Arrived, AlertState::Accepted));
    }

    #[test]
    fn names_round_trip_and_severity_raises_one_step() {
        for s in AlertState::ALL {
            assert_eq!(AlertState::parse(s.as_str()), Some(s));
            assert_eq!(
                serde_json::to_value(s).ok(),
                Some(serde_json::Value::String(s.as_str().into()))
            );
        }
        assert_eq!(raise(Severity::Low), Severity::Medium);
        assert_eq!(raise(Severity::Critical), Severity::Critical);
    }
}
