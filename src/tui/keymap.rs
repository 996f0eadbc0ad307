//! The key map is data: [`BINDINGS`] drives key handling, the `?` help
//! overlay and the footer hints, so the three cannot drift apart.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

/// Where a binding applies. Global bindings apply everywhere, after the
/// context of the topmost layer (help overlay, dialog, main screen).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ctx {
    Global,
    Main,
    /// A drill-down view (DVMs, kinds, monthly history); the main keys
    /// apply there too, after these.
    View,
    /// Typing a filter on a list (characters go into the filter).
    Filter,
    Dialog,
    Help,
}

impl Ctx {
    pub(crate) fn title(self) -> &'static str {
        match self {
            Ctx::Global => "everywhere",
            Ctx::Main => "main screen",
            Ctx::View => "DVMs, kinds and months views",
            Ctx::Filter => "while typing a filter (other characters are typed)",
            Ctx::Dialog => "rollover dialog",
            Ctx::Help => "this help",
        }
    }
}

/// What a key asks for. `update` turns actions into state changes and
/// commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Quit,
    ToggleHelp,
    CloseHelp,
    Redraw,
    TogglePause,
    StepBatch,
    StepDay,
    RunToRollover,
    /// Open the rollover dialog for the due month (after "not yet").
    ReviewRollover,
    CleanupNow,
    Faster,
    Slower,
    NextView,
    PrevView,
    /// Go to the view numbered by the key's digit (1-based).
    GoToView,
    /// Dialog: roll the month over now.
    Confirm,
    /// Dialog: not yet.
    Defer,
    /// Dialog: move between the buttons.
    ToggleChoice,
    /// Dialog: press the selected button.
    Choose,
    /// Lists (and the help): move the selection or scroll.
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
    /// Lists: sort by the next / previous column, reverse the order.
    SortNext,
    SortPrev,
    SortReverse,
    /// DVM and kind views: the next / previous period (30 d, 7 d, 24 h,
    /// closed months).
    NextPeriod,
    PrevPeriod,
    /// Lists: open the selected row's detail.
    Open,
    /// Close the detail, else clear the filter.
    Back,
    /// Start typing a filter.
    Filter,
    /// Filter: keep it and stop typing.
    FilterDone,
    /// Filter: drop it and stop typing.
    FilterCancel,
    /// Filter: delete the last character.
    FilterBackspace,
}

impl Action {
    /// Actions that change the run or its data: a watcher (`dvmtop
    /// watch`, `--readonly`) refuses them, and its footer does not offer
    /// them. Reviewing a due rollover (`c`) stays: a watcher may look.
    pub(crate) fn mutates(self) -> bool {
        matches!(
            self,
            Action::Confirm
                | Action::CleanupNow
                | Action::TogglePause
                | Action::StepBatch
                | Action::StepDay
                | Action::RunToRollover
                | Action::Faster
                | Action::Slower
        )
    }
}

/// One key: a code and the modifiers that must be held (Shift is ignored
/// for characters, which carry it in the character itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Key {
    pub(crate) code: KeyCode,
    pub(crate) mods: KeyModifiers,
}

const fn ch(c: char) -> Key {
    Key {
        code: KeyCode::Char(c),
        mods: KeyModifiers::NONE,
    }
}

const fn ctrl(c: char) -> Key {
    Key {
        code: KeyCode::Char(c),
        mods: KeyModifiers::CONTROL,
    }
}

const fn code(code: KeyCode) -> Key {
    Key {
        code,
        mods: KeyModifiers::NONE,
    }
}

impl Key {
    pub(crate) fn matches(&self, ev: &KeyEvent) -> bool {
        if ev.kind == KeyEventKind::Release {
            return false;
        }
        let held = ev.modifiers - KeyModifiers::SHIFT;
        let want = self.mods - KeyModifiers::SHIFT;
        match (self.code, ev.code) {
            (KeyCode::Char(a), KeyCode::Char(b)) => a == b && held == want,
            // Shift-Tab is BackTab, and crossterm reports it with SHIFT
            // held (some terminals without): Shift is part of the key.
            (KeyCode::BackTab, KeyCode::BackTab) => held == want,
            (a, b) => a == b && ev.modifiers == self.mods,
        }
    }

    /// How the key is written in help and hints.
    pub(crate) fn label(&self) -> String {
        let base = match self.code {
            KeyCode::Char(' ') => "space".to_owned(),
            KeyCode::Char(c) => c.to_string(),
            KeyCode::Esc => "Esc".into(),
            KeyCode::Enter => "Enter".into(),
            KeyCode::Tab => "Tab".into(),
            KeyCode::BackTab => "S-Tab".into(),
            KeyCode::Left => "←".into(),
            KeyCode::Right => "→".into(),
            KeyCode::Up => "↑".into(),
            KeyCode::Down => "↓".into(),
            KeyCode::PageUp => "PgUp".into(),
            KeyCode::PageDown => "PgDn".into(),
            KeyCode::Home => "Home".into(),
            KeyCode::End => "End".into(),
            KeyCode::Backspace => "Bksp".into(),
            KeyCode::F(n) => format!("F{n}"),
            other => format!("{other:?}"),
        };
        if self.mods.contains(KeyModifiers::CONTROL) {
            format!("^{}", base.to_uppercase())
        } else {
            base
        }
    }
}

pub(crate) struct Binding {
    pub(crate) ctx: Ctx,
    pub(crate) keys: &'static [Key],
    pub(crate) action: Action,
    /// Short word for the footer; empty: not in the footer.
    pub(crate) hint: &'static str,
    /// One line for the help overlay.
    pub(crate) help: &'static str,
}

impl Binding {
    pub(crate) fn keys_label(&self) -> String {
        // A run of number keys reads as a range: 1-6.
        let digits: Option<Vec<char>> = self
            .keys
            .iter()
            .map(|k| match k.code {
                KeyCode::Char(c) if c.is_ascii_digit() => Some(c),
                _ => None,
            })
            .collect();
        if let Some(d) = digits.filter(|d| d.len() > 2)
            && let (Some(a), Some(b)) = (d.first(), d.last())
        {
            return format!("{a}-{b}");
        }
        self.keys
            .iter()
            .map(Key::label)
            .collect::<Vec<_>>()
            .join("/")
    }
}

/// Every key dvmtop's TUI understands. `?`, `q`, `y` and `n`/Esc are
/// relied on by other tools (and the end-to-end test): keep them.
pub(crate) const BINDINGS: &[Binding] = &[
    Binding {
        ctx: Ctx::Global,
        keys: &[ch('?'), code(KeyCode::F(1))],
        action: Action::ToggleHelp,
        hint: "help",
        help: "show or hide this help",
    },
    Binding {
        ctx: Ctx::Global,
        keys: &[ch('q'), ctrl('c')],
        action: Action::Quit,
        hint: "quit",
        help: "quit: finish the batch in flight, commit, restore the terminal",
    },
    Binding {
        ctx: Ctx::Global,
        keys: &[ctrl('l')],
        action: Action::Redraw,
        hint: "",
        help: "redraw the whole screen",
    },
    Binding {
        ctx: Ctx::Main,
        keys: &[ch(' '), ch('p')],
        action: Action::TogglePause,
        hint: "pause",
        help: "pause or resume processing (also a run started --paused)",
    },
    Binding {
        ctx: Ctx::Main,
        keys: &[ch('s')],
        action: Action::StepBatch,
        hint: "step",
        help: "process one batch, then pause",
    },
    Binding {
        ctx: Ctx::Main,
        keys: &[ch('d')],
        action: Action::StepDay,
        hint: "day",
        help: "run until the clock reaches the next day, then pause",
    },
    Binding {
        ctx: Ctx::Main,
        keys: &[ch('r')],
        action: Action::RunToRollover,
        hint: "to rollover",
        help: "run until the next month rollover happens or waits, then pause",
    },
    Binding {
        ctx: Ctx::Main,
        keys: &[ch('c')],
        action: Action::ReviewRollover,
        hint: "rollover",
        help: "open the due rollover's dialog again (after \"not yet\")",
    },
    Binding {
        ctx: Ctx::Main,
        keys: &[ch('x')],
        action: Action::CleanupNow,
        hint: "cleanup",
        help: "run the daily cleanup now, for the current day",
    },
    Binding {
        ctx: Ctx::Main,
        keys: &[ch('+'), ch('=')],
        action: Action::Faster,
        hint: "faster",
        help: "backtest speed up (shorter pause after each batch)",
    },
    Binding {
        ctx: Ctx::Main,
        keys: &[ch('-')],
        action: Action::Slower,
        hint: "slower",
        help: "backtest slow down (longer pause after each batch)",
    },
    Binding {
        ctx: Ctx::Main,
        keys: &[code(KeyCode::Tab)],
        action: Action::NextView,
        hint: "view",
        help: "next view (overview, DVMs, kinds, months, history, ingest)",
    },
    Binding {
        ctx: Ctx::Main,
        keys: &[code(KeyCode::BackTab)],
        action: Action::PrevView,
        hint: "",
        help: "previous view",
    },
    Binding {
        ctx: Ctx::Main,
        keys: &[ch('1'), ch('2'), ch('3'), ch('4'), ch('5'), ch('6')],
        action: Action::GoToView,
        hint: "",
        help: "view 1 overview 2 DVMs 3 kinds 4 months 5 history 6 ingest",
    },
    Binding {
        ctx: Ctx::Main,
        keys: &[code(KeyCode::Down), ch('j')],
        action: Action::Down,
        hint: "scroll",
        help: "overview, history: scroll the cleanup history to older runs",
    },
    Binding {
        ctx: Ctx::Main,
        keys: &[code(KeyCode::Up), ch('k')],
        action: Action::Up,
        hint: "",
        help: "overview, history: scroll the cleanup history back",
    },
    Binding {
        ctx: Ctx::Main,
        keys: &[code(KeyCode::PageDown)],
        action: Action::PageDown,
        hint: "",
        help: "overview, history: ten older runs",
    },
    Binding {
        ctx: Ctx::Main,
        keys: &[code(KeyCode::PageUp)],
        action: Action::PageUp,
        hint: "",
        help: "overview, history: ten newer runs",
    },
    Binding {
        ctx: Ctx::Main,
        keys: &[code(KeyCode::Home), ch('g')],
        action: Action::Top,
        hint: "",
        help: "overview, history: back to the newest run",
    },
    Binding {
        ctx: Ctx::View,
        keys: &[code(KeyCode::Up), ch('k')],
        action: Action::Up,
        hint: "",
        help: "select the previous row",
    },
    Binding {
        ctx: Ctx::View,
        keys: &[code(KeyCode::Down), ch('j')],
        action: Action::Down,
        hint: "",
        help: "select the next row",
    },
    Binding {
        ctx: Ctx::View,
        keys: &[code(KeyCode::PageUp)],
        action: Action::PageUp,
        hint: "",
        help: "ten rows up",
    },
    Binding {
        ctx: Ctx::View,
        keys: &[code(KeyCode::PageDown)],
        action: Action::PageDown,
        hint: "",
        help: "ten rows down",
    },
    Binding {
        ctx: Ctx::View,
        keys: &[code(KeyCode::Home), ch('g')],
        action: Action::Top,
        hint: "",
        help: "first row",
    },
    Binding {
        ctx: Ctx::View,
        keys: &[code(KeyCode::End), ch('G')],
        action: Action::Bottom,
        hint: "",
        help: "last row",
    },
    Binding {
        ctx: Ctx::View,
        keys: &[code(KeyCode::Enter)],
        action: Action::Open,
        hint: "open",
        help: "open the selected DVM, kind or month",
    },
    Binding {
        ctx: Ctx::View,
        keys: &[code(KeyCode::Esc), code(KeyCode::Backspace)],
        action: Action::Back,
        hint: "back",
        help: "back to the list (on a list: clear the filter)",
    },
    Binding {
        ctx: Ctx::View,
        keys: &[code(KeyCode::Right), ch('>')],
        action: Action::SortNext,
        hint: "sort",
        help: "sort by the next column (the header marks it ↓/↑)",
    },
    Binding {
        ctx: Ctx::View,
        keys: &[code(KeyCode::Left), ch('<')],
        action: Action::SortPrev,
        hint: "",
        help: "sort by the previous column",
    },
    Binding {
        ctx: Ctx::View,
        keys: &[ch('i')],
        action: Action::SortReverse,
        hint: "reverse",
        help: "reverse the order",
    },
    Binding {
        ctx: Ctx::View,
        keys: &[ch('/')],
        action: Action::Filter,
        hint: "filter",
        help: "filter by name or id prefix (kinds: by number)",
    },
    Binding {
        ctx: Ctx::View,
        keys: &[ch('w')],
        action: Action::NextPeriod,
        hint: "period",
        help: "next period: 30 d, 7 d, 24 h, then each closed month",
    },
    Binding {
        ctx: Ctx::View,
        keys: &[ch('W')],
        action: Action::PrevPeriod,
        hint: "",
        help: "previous period",
    },
    Binding {
        ctx: Ctx::Filter,
        keys: &[code(KeyCode::Enter)],
        action: Action::FilterDone,
        hint: "keep",
        help: "keep the filter, stop typing",
    },
    Binding {
        ctx: Ctx::Filter,
        keys: &[code(KeyCode::Esc)],
        action: Action::FilterCancel,
        hint: "drop",
        help: "drop the filter",
    },
    Binding {
        ctx: Ctx::Filter,
        keys: &[code(KeyCode::Backspace)],
        action: Action::FilterBackspace,
        hint: "",
        help: "delete the last character",
    },
    Binding {
        ctx: Ctx::Dialog,
        keys: &[ch('y')],
        action: Action::Confirm,
        hint: "roll over",
        help: "confirm: roll the month over now",
    },
    Binding {
        ctx: Ctx::Dialog,
        keys: &[ch('n'), code(KeyCode::Esc)],
        action: Action::Defer,
        hint: "not yet",
        help: "not yet: hide until the next day or month it is due",
    },
    Binding {
        ctx: Ctx::Dialog,
        keys: &[
            code(KeyCode::Left),
            code(KeyCode::Right),
            code(KeyCode::Tab),
        ],
        action: Action::ToggleChoice,
        hint: "",
        help: "move between the buttons",
    },
    Binding {
        ctx: Ctx::Dialog,
        keys: &[code(KeyCode::Enter)],
        action: Action::Choose,
        hint: "",
        help: "press the selected button (\"not yet\" unless moved)",
    },
    Binding {
        ctx: Ctx::Help,
        keys: &[code(KeyCode::Esc)],
        action: Action::CloseHelp,
        hint: "close",
        help: "close this help",
    },
    Binding {
        ctx: Ctx::Help,
        keys: &[code(KeyCode::Down), ch('j')],
        action: Action::Down,
        hint: "scroll",
        help: "scroll",
    },
    Binding {
        ctx: Ctx::Help,
        keys: &[code(KeyCode::Up), ch('k')],
        action: Action::Up,
        hint: "",
        help: "scroll back",
    },
];

/// The contexts a key is looked up in, first match wins: a view's keys
/// shadow the main ones, which apply there too; global ones come last.
pub(crate) fn chain(ctx: Ctx) -> &'static [Ctx] {
    match ctx {
        Ctx::View => &[Ctx::View, Ctx::Main, Ctx::Global],
        Ctx::Global => &[Ctx::Global],
        Ctx::Main => &[Ctx::Main, Ctx::Global],
        Ctx::Filter => &[Ctx::Filter, Ctx::Global],
        Ctx::Dialog => &[Ctx::Dialog, Ctx::Global],
        Ctx::Help => &[Ctx::Help, Ctx::Global],
    }
}

/// The action for a key in context `ctx` (then its fallbacks).
pub(crate) fn lookup(ctx: Ctx, ev: &KeyEvent) -> Option<Action> {
    chain(ctx).iter().find_map(|c| {
        BINDINGS
            .iter()
            .filter(|b| b.ctx == *c)
            .find(|b| b.keys.iter().any(|k| k.matches(ev)))
            .map(|b| b.action)
    })
}

/// A key label and its footer word.
pub(crate) type Hint = (String, &'static str);

/// Footer hints: the context's own bindings (a view's, then the main
/// ones), then the global ones (which the footer always keeps); read-only
/// hides the actions it refuses.
pub(crate) fn hints(ctx: Ctx, readonly: bool) -> (Vec<Hint>, Vec<Hint>) {
    let of = |c: Ctx| {
        BINDINGS
            .iter()
            .filter(|b| b.ctx == c)
            .filter(|b| !(b.hint.is_empty() || readonly && b.action.mutates()))
            .map(|b| {
                let key = b.keys.first().map(Key::label).unwrap_or_default();
                (key, b.hint)
            })
            .collect::<Vec<_>>()
    };
    let local = chain(ctx)
        .iter()
        .filter(|c| **c != Ctx::Global)
        .flat_map(|c| of(*c))
        .collect();
    (local, of(Ctx::Global))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: KeyCode, m: KeyModifiers) -> KeyEvent {
        KeyEvent::new(c, m)
    }

    #[test]
    fn lookups() {
        let q = key(KeyCode::Char('q'), KeyModifiers::NONE);
        assert_eq!(lookup(Ctx::Main, &q), Some(Action::Quit));
        assert_eq!(lookup(Ctx::Dialog, &q), Some(Action::Quit));
        let help = key(KeyCode::Char('?'), KeyModifiers::SHIFT);
        assert_eq!(lookup(Ctx::Main, &help), Some(Action::ToggleHelp));
        let y = key(KeyCode::Char('y'), KeyModifiers::NONE);
        assert_eq!(lookup(Ctx::Dialog, &y), Some(Action::Confirm));
        assert_eq!(lookup(Ctx::Main, &y), None, "y only means yes in a dialog");
        let esc = key(KeyCode::Esc, KeyModifiers::NONE);
        assert_eq!(lookup(Ctx::Dialog, &esc), Some(Action::Defer));
        assert_eq!(lookup(Ctx::Help, &esc), Some(Action::CloseHelp));
        let ctrl_l = key(KeyCode::Char('l'), KeyModifiers::CONTROL);
        assert_eq!(lookup(Ctx::Main, &ctrl_l), Some(Action::Redraw));
        let l = key(KeyCode::Char('l'), KeyModifiers::NONE);
        assert_eq!(lookup(Ctx::Main, &l), None);
        let ctrl_c = key(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(lookup(Ctx::Main, &ctrl_c), Some(Action::Quit));
        let two = key(KeyCode::Char('2'), KeyModifiers::NONE);
        assert_eq!(lookup(Ctx::Main, &two), Some(Action::GoToView));
        let c = key(KeyCode::Char('c'), KeyModifiers::NONE);
        assert_eq!(lookup(Ctx::Main, &c), Some(Action::ReviewRollover));
        // Views keep the main keys, and add their own.
        assert_eq!(lookup(Ctx::View, &c), Some(Action::ReviewRollover));
        let slash = key(KeyCode::Char('/'), KeyModifiers::NONE);
        assert_eq!(lookup(Ctx::View, &slash), Some(Action::Filter));
        assert_eq!(lookup(Ctx::Main, &slash), None);
        let enter = key(KeyCode::Enter, KeyModifiers::NONE);
        assert_eq!(lookup(Ctx::Filter, &enter), Some(Action::FilterDone));
        assert_eq!(lookup(Ctx::Filter, &c), None, "typed, not a command");
    }

    #[test]
    fn shift_tab_is_back_tab_with_or_without_shift() {
        // crossterm reports Shift-Tab as BackTab with SHIFT held.
        let shifted = key(KeyCode::BackTab, KeyModifiers::SHIFT);
        assert_eq!(lookup(Ctx::Main, &shifted), Some(Action::PrevView));
        assert_eq!(lookup(Ctx::View, &shifted), Some(Action::PrevView));
        let bare = key(KeyCode::BackTab, KeyModifiers::NONE);
        assert_eq!(lookup(Ctx::Main, &bare), Some(Action::PrevView));
        let ctrl = key(
            KeyCode::BackTab,
            KeyModifiers::CONTROL | KeyModifiers::SHIFT,
        );
        assert_eq!(lookup(Ctx::Main, &ctrl), None);
        // Shift does not turn other named keys into their plain selves.
        let shift_enter = key(KeyCode::Enter, KeyModifiers::SHIFT);
        assert_eq!(lookup(Ctx::View, &shift_enter), None);
    }

    #[test]
    fn no_key_is_bound_twice_in_a_context() {
        for a in BINDINGS {
            for b in BINDINGS {
                if std::ptr::eq(a, b) {
                    continue;
                }
                let overlap = chain(a.ctx).contains(&b.ctx) || chain(b.ctx).contains(&a.ctx);
                // A view may bind a main-screen key to the same action
                // (↑↓ move its rows, as they scroll the cleanup history).
                let same = a.action == b.action && a.ctx != b.ctx;
                if overlap && !same {
                    for k in a.keys {
                        assert!(
                            !b.keys.contains(k),
                            "{} is bound to {:?} and {:?}",
                            k.label(),
                            a.action,
                            b.action
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn readonly_hints_hide_mutations() {
        let (all, global) = hints(Ctx::Main, false);
        let (ro, _) = hints(Ctx::Main, true);
        assert!(all.iter().any(|(_, h)| *h == "cleanup"));
        assert!(!ro.iter().any(|(_, h)| *h == "cleanup"));
        let (dialog_ro, _) = hints(Ctx::Dialog, true);
        assert!(!dialog_ro.iter().any(|(_, h)| *h == "roll over"));
        assert_eq!(
            global,
            vec![("?".to_owned(), "help"), ("q".to_owned(), "quit")]
        );
    }
}
