//! A sortable, filterable, scrollable list as data (pure): the sort
//! column and direction, the filter text, the selection. `update` changes
//! it; the view's render reads it. Rows are sorted and filtered by the
//! view's own functions, so this knows nothing about DVMs or kinds.

/// How far PageUp/PageDown move.
pub(crate) const PAGE: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Table {
    /// Index into the view's columns.
    pub(crate) sort: usize,
    /// Largest first.
    pub(crate) desc: bool,
    pub(crate) filter: String,
    /// Index into the visible (filtered, sorted) rows.
    pub(crate) selected: usize,
}

impl Table {
    pub(crate) fn new(sort: usize, desc: bool) -> Table {
        Table {
            sort,
            desc,
            filter: String::new(),
            selected: 0,
        }
    }

    /// Next or previous sort column (wrapping); a new column starts in its
    /// natural direction (`desc_by_default`), and the selection goes back
    /// to the top.
    pub(crate) fn sort_by(
        &mut self,
        columns: usize,
        forward: bool,
        desc_by_default: impl Fn(usize) -> bool,
    ) {
        if columns == 0 {
            return;
        }
        self.sort = if forward {
            (self.sort + 1) % columns
        } else {
            (self.sort + columns - 1) % columns
        };
        self.desc = desc_by_default(self.sort);
        self.selected = 0;
    }

    pub(crate) fn reverse(&mut self) {
        self.desc = !self.desc;
        self.selected = 0;
    }

    /// Moves the selection by `delta` rows within `len` rows.
    pub(crate) fn step(&mut self, delta: isize, len: usize) {
        if len == 0 {
            self.selected = 0;
            return;
        }
        let max = len - 1;
        let cur = self.selected.min(max) as isize;
        self.selected = (cur + delta).clamp(0, max as isize) as usize;
    }

    pub(crate) fn top(&mut self) {
        self.selected = 0;
    }

    pub(crate) fn bottom(&mut self, len: usize) {
        self.selected = len.saturating_sub(1);
    }

    /// The selection within `len` rows (the list may have shrunk).
    pub(crate) fn selection(&self, len: usize) -> Option<usize> {
        (len > 0).then(|| self.selected.min(len - 1))
    }

    pub(crate) fn type_char(&mut self, c: char) {
        if self.filter.chars().count() < 64 {
            self.filter.push(c);
            self.selected = 0;
        }
    }

    pub(crate) fn backspace(&mut self) {
        self.filter.pop();
        self.selected = 0;
    }

    /// Whether `name` or `id` passes the filter: the id by prefix, the name
    /// anywhere; case-insensitive. An empty filter passes everything.
    pub(crate) fn passes(&self, id: &str, name: Option<&str>) -> bool {
        if self.filter.is_empty() {
            return true;
        }
        let f = self.filter.to_lowercase();
        id.to_lowercase().starts_with(&f) || name.is_some_and(|n| n.to_lowercase().contains(&f))
    }

    /// The first row to draw so the selection is visible in `height` rows.
    pub(crate) fn offset(&self, len: usize, height: usize) -> usize {
        match self.selection(len) {
            Some(s) if height > 0 && s >= height => s + 1 - height,
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrolling_stays_within_the_rows() {
        let mut t = Table::new(0, true);
        t.step(-1, 5);
        assert_eq!(t.selected, 0);
        t.step(3, 5);
        assert_eq!(t.selected, 3);
        t.step(PAGE as isize, 5);
        assert_eq!(t.selected, 4);
        t.bottom(5);
        assert_eq!(t.selected, 4);
        assert_eq!(t.selection(2), Some(1), "a shrunk list clamps");
        assert_eq!(t.selection(0), None);
        t.top();
        assert_eq!(t.selected, 0);
        t.step(1, 0);
        assert_eq!(t.selected, 0);
        t.selected = 12;
        assert_eq!(t.offset(20, 5), 8);
        assert_eq!(t.offset(20, 0), 0);
    }

    #[test]
    fn sorting_wraps_and_resets_the_direction() {
        let mut t = Table::new(1, true);
        t.selected = 3;
        t.sort_by(3, true, |c| c != 0);
        assert_eq!((t.sort, t.desc, t.selected), (2, true, 0));
        t.sort_by(3, true, |c| c != 0);
        assert_eq!((t.sort, t.desc), (0, false));
        t.sort_by(3, false, |c| c != 0);
        assert_eq!(t.sort, 2);
        t.reverse();
        assert!(!t.desc);
    }

    #[test]
    fn filter_by_id_prefix_or_name() {
        let mut t = Table::new(0, true);
        assert!(t.passes("abcd", None));
        for c in "AB".chars() {
            t.type_char(c);
        }
        assert!(t.passes("abcd", None));
        assert!(!t.passes("cdab", None), "ids match by prefix only");
        assert!(t.passes("cdab", Some("Tabby translator")), "names anywhere");
        t.backspace();
        t.backspace();
        t.backspace();
        assert!(t.filter.is_empty());
    }
}
