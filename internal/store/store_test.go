package store

import (
	"errors"
	"testing"
)

func TestBoltRoundTripAndReopen(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx Tx) error {
		for _, k := range []string{"a/1", "a/2", "b/1"} {
			if err := tx.Put("items", k, []byte("v"+k)); err != nil {
				return err
			}
		}
		return tx.Delete("items", "a/2")
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: got %v, want ErrLocked", err)
	}
	db.Close()
	db, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var got []string
	db.View(func(tx Tx) error {
		if v := tx.Get("items", "b/1"); string(v) != "vb/1" {
			t.Errorf("Get b/1 = %q", v)
		}
		if v := tx.Get("missing", "x"); v != nil {
			t.Errorf("Get on missing bucket = %q", v)
		}
		return tx.ForEach("items", "a/", func(k string, _ []byte) error {
			got = append(got, k)
			return nil
		})
	})
	if len(got) != 1 || got[0] != "a/1" {
		t.Fatalf("ForEach a/ = %v, want [a/1]", got)
	}
}
