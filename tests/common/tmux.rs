//! A tmux server of our own for end-to-end runs of the TUI: start a
//! session of a given size, press keys, poll the screen for text (no blind
//! sleeps). Included with `#[path]` by the test files that drive tmux;
//! each uses part of it.
#![allow(dead_code)]

use std::process::Command;
use std::time::{Duration, Instant};

/// Killed on drop.
pub struct Tmux {
    pub socket: String,
    pub session: String,
}

impl Tmux {
    pub fn start(tag: &str, width: u16, height: u16, shell_cmd: &str) -> Tmux {
        let t = Tmux {
            socket: format!("dvmtop_{tag}_{}", std::process::id()),
            session: "e2e".into(),
        };
        let out = t.run(&[
            "new-session",
            "-d",
            "-s",
            &t.session,
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            shell_cmd,
        ]);
        assert!(
            out.status.success(),
            "tmux new-session failed (is tmux installed?): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        t
    }

    pub fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux runs")
    }

    pub fn screen(&self) -> String {
        let out = self.run(&["capture-pane", "-p", "-t", &self.session]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Sends tmux key names (`Enter`, `Escape`, `Right`, `NPage`) or text.
    pub fn keys(&self, keys: &str) {
        let out = self.run(&["send-keys", "-t", &self.session, keys]);
        assert!(out.status.success());
    }

    /// Sends text literally (no key-name lookup).
    pub fn type_text(&self, text: &str) {
        let out = self.run(&["send-keys", "-l", "-t", &self.session, text]);
        assert!(out.status.success());
    }

    /// Polls the screen until `pred` holds; fails with the last screen.
    /// A tmux format evaluated for the session (e.g. `#{alternate_on}`).
    pub fn display(&self, format: &str) -> String {
        let out = self.run(&["display", "-p", "-t", &self.session, format]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    pub fn wait_for(&self, what: &str, limit: Duration, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            if start.elapsed() > limit {
                panic!("timed out after {limit:?} waiting for {what}; the screen:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}
