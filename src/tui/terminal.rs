//! Entering and leaving the terminal. ratatui's init installs a panic hook
//! that restores the terminal (color-eyre is installed before it, in
//! main); alternate screen only, no inline viewport (it queries the cursor
//! and times out over slow SSH links); mouse capture only when asked.

use crossterm::event::{DisableMouseCapture, EnableMouseCapture};
use crossterm::execute;
use ratatui::DefaultTerminal;
use std::io::stdout;

pub(crate) fn enter(mouse: bool) -> std::io::Result<DefaultTerminal> {
    let terminal = ratatui::try_init()?;
    // A panic's message also goes to the log: the terminal it is printed
    // on may be gone (SSH hang-up).
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!("panic: {info}");
        hook(info);
    }));
    if mouse {
        // Also undo the capture when a panic restores the terminal.
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let _ = execute!(stdout(), DisableMouseCapture);
            hook(info);
        }));
        execute!(stdout(), EnableMouseCapture)?;
    }
    Ok(terminal)
}

/// Leaves raw mode and the alternate screen. Errors are ignored: after an
/// SSH hang-up there is no terminal left to restore.
pub fn restore(mouse: bool) {
    if mouse {
        let _ = execute!(stdout(), DisableMouseCapture);
    }
    let _ = ratatui::try_restore();
}

/// Restores the terminal and lets go of it. When the terminal is gone,
/// ratatui's `Drop` would `eprintln!` that it cannot show the cursor, and
/// `eprintln!` panics on a dead stderr: the value is forgotten instead.
pub(crate) fn leave(mut terminal: DefaultTerminal, mouse: bool) {
    let shown = terminal.show_cursor().is_ok();
    restore(mouse);
    if !shown {
        std::mem::forget(terminal);
    }
}

/// Ctrl-L: forget what is on screen and repaint everything (resize clears
/// without querying the cursor, unlike `Terminal::clear`).
pub(crate) fn repaint(terminal: &mut DefaultTerminal) -> std::io::Result<()> {
    let size = terminal.size()?;
    terminal.resize(ratatui::layout::Rect::new(0, 0, size.width, size.height))
}
