//! Colours. Indexed (256-colour) palette by default, RGB only when the
//! terminal says `COLORTERM=truecolor`, none at all with `NO_COLOR` or
//! `--no-color`. Meaning is always carried by words or glyphs too, so the
//! monochrome screen says everything the coloured one does.

use ratatui::style::{Color, Modifier, Style};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Palette {
    /// 24-bit colour (`COLORTERM=truecolor` or `24bit`).
    TrueColor,
    /// The 256-colour indexed palette (works in tmux and over SSH).
    Indexed,
    /// No colour: bold, reverse and words only.
    Mono,
}

impl Palette {
    /// Chooses from the flag and the environment (`NO_COLOR` set to
    /// anything non-empty wins, as no-color.org asks).
    pub fn detect(no_color_flag: bool) -> Palette {
        let set = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
        let truecolor = std::env::var("COLORTERM")
            .is_ok_and(|v| v.eq_ignore_ascii_case("truecolor") || v.eq_ignore_ascii_case("24bit"));
        Palette::choose(no_color_flag || set("NO_COLOR"), truecolor)
    }

    pub(crate) fn choose(no_color: bool, truecolor: bool) -> Palette {
        if no_color {
            Palette::Mono
        } else if truecolor {
            Palette::TrueColor
        } else {
            Palette::Indexed
        }
    }
}

/// The styles panes use, by meaning.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Theme {
    pub(crate) palette: Palette,
}

impl Theme {
    pub(crate) fn new(palette: Palette) -> Theme {
        Theme { palette }
    }

    fn fg(&self, indexed: u8, rgb: (u8, u8, u8)) -> Style {
        match self.palette {
            Palette::TrueColor => Style::new().fg(Color::Rgb(rgb.0, rgb.1, rgb.2)),
            Palette::Indexed => Style::new().fg(Color::Indexed(indexed)),
            Palette::Mono => Style::new(),
        }
    }

    /// Pane titles.
    pub(crate) fn title(&self) -> Style {
        self.fg(75, (95, 175, 255)).add_modifier(Modifier::BOLD)
    }
    /// Pane borders.
    pub(crate) fn border(&self) -> Style {
        self.fg(240, (88, 88, 88))
    }
    /// Labels in front of figures.
    pub(crate) fn label(&self) -> Style {
        self.fg(245, (138, 138, 138))
    }
    /// Figures.
    pub(crate) fn value(&self) -> Style {
        self.fg(255, (238, 238, 238)).add_modifier(Modifier::BOLD)
    }
    pub(crate) fn ok(&self) -> Style {
        self.fg(114, (135, 215, 135))
    }
    pub(crate) fn warn(&self) -> Style {
        self.fg(214, (255, 175, 0)).add_modifier(Modifier::BOLD)
    }
    pub(crate) fn error(&self) -> Style {
        match self.palette {
            Palette::Mono => Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED),
            _ => self.fg(203, (255, 95, 95)).add_modifier(Modifier::BOLD),
        }
    }
    /// Charts and gauges.
    pub(crate) fn chart(&self) -> Style {
        self.fg(73, (95, 175, 175))
    }
    pub(crate) fn chart_alt(&self) -> Style {
        self.fg(139, (175, 135, 175))
    }
    /// The title bar and footer.
    pub(crate) fn bar(&self) -> Style {
        match self.palette {
            Palette::Mono => Style::new().add_modifier(Modifier::REVERSED),
            Palette::Indexed => Style::new().bg(Color::Indexed(236)).fg(Color::Indexed(252)),
            Palette::TrueColor => Style::new()
                .bg(Color::Rgb(48, 48, 48))
                .fg(Color::Rgb(208, 208, 208)),
        }
    }
    /// Keys in hints and help.
    pub(crate) fn key(&self) -> Style {
        self.fg(222, (255, 215, 135)).add_modifier(Modifier::BOLD)
    }
    /// The selected dialog button.
    pub(crate) fn selected(&self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn palette_choice() {
        assert_eq!(Palette::choose(true, true), Palette::Mono);
        assert_eq!(Palette::choose(false, true), Palette::TrueColor);
        assert_eq!(Palette::choose(false, false), Palette::Indexed);
        let mono = Theme::new(Palette::Mono);
        assert_eq!(mono.ok().fg, None);
        assert_eq!(mono.warn().fg, None);
        assert!(Theme::new(Palette::Indexed).ok().fg.is_some());
    }
}
