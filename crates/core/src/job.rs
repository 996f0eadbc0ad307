//! The audited jobs (SPEC §6: "every run is audited") and how they ended.
//! Stored as text in `job_runs`; typed everywhere else.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// An audited job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Job {
    DailyCleanup,
    MonthlyRollover,
    Backup,
}

/// How a job run ended (or that it has not yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Running,
    Ok,
    Failed,
    /// Cut short by a crash; marked so at the next start.
    Interrupted,
}

macro_rules! text_enum {
    ($t:ty, $what:literal, $($v:path => $s:literal),+ $(,)?) => {
        impl $t {
            pub fn as_str(self) -> &'static str {
                match self { $($v => $s),+ }
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($s => Ok($v),)+
                    other => Err(format!("unknown {} {other:?}", $what)),
                }
            }
        }
    };
}

text_enum!(Job, "job",
    Job::DailyCleanup => "daily_cleanup",
    Job::MonthlyRollover => "monthly_rollover",
    Job::Backup => "backup",
);
text_enum!(Outcome, "outcome",
    Outcome::Running => "running",
    Outcome::Ok => "ok",
    Outcome::Failed => "failed",
    Outcome::Interrupted => "interrupted",
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips() {
        for j in [Job::DailyCleanup, Job::MonthlyRollover, Job::Backup] {
            assert_eq!(j.as_str().parse::<Job>(), Ok(j));
            assert_eq!(serde_json::to_value(j).unwrap(), j.as_str());
        }
        for o in [
            Outcome::Running,
            Outcome::Ok,
            Outcome::Failed,
            Outcome::Interrupted,
        ] {
            assert_eq!(o.to_string().parse::<Outcome>(), Ok(o));
        }
        assert!("done".parse::<Outcome>().is_err());
    }
}
