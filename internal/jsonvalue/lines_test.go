package jsonvalue

import (
	"bufio"
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/iotest"
)

func TestDecodeLinesNumbersLinesAndSkipsBlankOnes(t *testing.T) {
	readFailed := errors.New("the disk is gone")
	for _, tc := range []struct {
		name, in string
		want     string // the lines as N=Raw, space separated
		wantErr  func(error) bool
		errText  string
	}{
		{name: "empty", in: "", want: ""},
		{name: "blank lines and white space", in: "\n {\"a\": 1} \r\n\n\t[2]\n3", want: `2={"a": 1} 4=[2] 5=3`},
		{name: "a line Decode refuses", in: "{}\n\n{\"a\":1,\"a\":2}\n", wantErr: func(err error) bool {
			var le *LineError
			return errors.As(err, &le) && le.N == 3
		}, errText: "line 3: "},
		{name: "a line longer than the bound", in: "1\n" + strings.Repeat(" ", 40) + "2\n", wantErr: func(err error) bool {
			return errors.Is(err, bufio.ErrTooLong)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lines, err := DecodeLines(strings.NewReader(tc.in), 32)
			if tc.wantErr != nil {
				if err == nil || !tc.wantErr(err) || !strings.HasPrefix(err.Error(), tc.errText) || lines != nil {
					t.Fatalf("DecodeLines = %v, %v", lines, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, l := range lines {
				if _, err := Decode(l.Raw); err != nil || l.Value == nil {
					t.Errorf("line %d: raw %q, value %v", l.N, l.Raw, l.Value)
				}
				got = append(got, fmt.Sprintf("%d=%s", l.N, l.Raw))
			}
			if strings.Join(got, " ") != tc.want {
				t.Fatalf("lines %q, want %q", strings.Join(got, " "), tc.want)
			}
		})
	}
	if _, err := DecodeLines(iotest.ErrReader(readFailed), 32); !errors.Is(err, readFailed) {
		t.Fatalf("a read error came back as %v", err)
	}
}
