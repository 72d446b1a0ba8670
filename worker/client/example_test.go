package client_test

import (
	"bytes"
	"context"
	"fmt"
	"log"

	"github.com/nats-io/nats.go"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/trt"
	"github.com/jetinfer/jetinfer/worker/client"
)

// A producer submits two requests for the digits model and reads the
// logits of each, in request order. (Examples without output are
// compiled, not run: they need a worker; TestSubmitCollectsInOrder runs
// the same steps against one.)
func Example() {
	nc, err := nats.Connect(nats.DefaultURL)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	c, err := client.New(nc, client.Config{Model: "digits"})
	if err != nil {
		log.Fatal(err)
	}
	var bodies [][]byte
	for range 2 {
		var body bytes.Buffer
		pixels := trt.Tensor{Name: "pixels", DType: trt.Float32, Shape: trt.Shape{4, 8, 8}, Data: make([]byte, 4*64*4)}
		if err := codec.EncodeRequest(&body, []trt.Tensor{pixels}, nil); err != nil {
			log.Fatal(err)
		}
		bodies = append(bodies, body.Bytes())
	}
	results, err := c.Submit(context.Background(), "example-job", bodies)
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range results {
		res, err := r.Decode(codec.DefaultLimits())
		if err != nil { // an error result: r.Status is its code
			fmt.Println(r.RequestID, err)
			continue
		}
		logits, _ := res.Column("logits")
		fmt.Println(r.RequestID, res.Rows, logits.DType, logits.RowShape)
		res.Release()
	}
}

// Publish sets the optional headers of the contract and retries under the
// same Nats-Msg-Id until the server has stored the request.
func ExampleClient_Publish() {
	nc, _ := nats.Connect(nats.DefaultURL)
	defer nc.Close()
	c, _ := client.New(nc, client.Config{Model: "digits", Retries: 20})
	ack, err := c.Publish(context.Background(), client.Request{
		ID:       "job7-0",
		Job:      "job7",
		ReplyTo:  "jetinfer.res.digits.job7.part0", // must be under <prefix>.res.<model>.
		Body:     []byte{ /* Arrow IPC stream */ },
		Priority: 5,
		Version:  "3",
	})
	fmt.Println(ack, err)
}

// Run streams a large job with bounded memory: the Source yields request
// bodies, the Sink receives each result once, in order; running the same
// job again resumes it.
func ExampleClient_Run() {
	nc, _ := nats.Connect(nats.DefaultURL)
	defer nc.Close()
	c, _ := client.New(nc, client.Config{Model: "digits"})
	var bodies [][]byte // or any client.Source, e.g. reading a Parquet file
	st, err := c.Run(context.Background(), client.Job{Name: "nightly-2026-12-05", Fingerprint: "input-v1", Window: 16},
		client.Bodies(bodies, nil),
		func(seq int, _ client.Part, r client.Result) error {
			if err := r.Err(); err != nil {
				fmt.Println("request", seq, "failed:", err)
			}
			return nil
		})
	fmt.Println(st.Requests, st.Published, err)
}
