package store

import (
	"context"
	"time"
)

// Conversation states (a rule's set_state and match.state): one row per
// user in states, written by Accept with the rest of a callback's batch
// and read with one point lookup before the rules decide.

// putState applies b's ClearState, then its SetState.
func putState(tx *txn, b *Batch) error {
	if b.ClearState != "" {
		if err := tx.exec("DELETE FROM states WHERE openid = ?", b.ClearState); err != nil {
			return err
		}
	}
	if st := b.SetState; st != nil {
		return tx.exec("INSERT OR REPLACE INTO states(openid, name, expires) VALUES(?, ?, ?)",
			st.OpenID, st.Name, ms(b.Now.Add(st.TTL)))
	}
	return nil
}

// State returns openid's conversation state unexpired at now.
func (s *SQLite) State(ctx context.Context, openid string, now time.Time) (string, bool, error) {
	var name string
	var ok bool
	err := s.do(ctx, "State", false, func(tx *txn) error {
		var err error
		ok, err = tx.row("SELECT name FROM states WHERE openid = ? AND expires > ?", []any{openid, ms(now)}, &name)
		return err
	})
	if err != nil || !ok {
		return "", false, err
	}
	return name, true, nil
}
