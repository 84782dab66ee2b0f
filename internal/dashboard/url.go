package dashboard

import (
	"bufio"
	"io"
	"regexp"
)

var printedURL = regexp.MustCompile(`http://\S+/`)

// URLFrom reads what kubectl canopy dashboard prints and sends the URL it serves at, once,
// for the programs that run the command (the demo, the browser tests). It reads r to its
// end, so the command never blocks on its output.
func URLFrom(r io.Reader) <-chan string {
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if u := printedURL.FindString(sc.Text()); u != "" {
				select {
				case urls <- u:
				default:
				}
			}
		}
	}()
	return urls
}
