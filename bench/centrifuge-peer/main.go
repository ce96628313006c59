// centrifuge-peer is the peer the CanvasChat benchmark compares against: the Centrifuge
// library (the engine inside Centrifugo v6) with its Redis broker, serving the Centrifugo
// JSON client protocol at /connection/websocket. The Centrifugo server module itself is not
// available from the module proxy this project can reach, so this is the closest buildable
// equivalent: what it leaves out (config loading, admin API, JWT) is not on the message path.
//
// Like Centrifugo with `allow_subscribe_for_client` / `allow_publish_for_client` and
// `client.insecure`, every client may subscribe and publish; the user id comes from the
// `user` query parameter. With -presence, subscriptions also keep Redis presence and emit
// join/leave, which is the closest match to what the CanvasChat gateway does per connection.
package main

import (
	"context"
	"errors"
	"flag"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/centrifugal/centrifuge"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8000", "HTTP listen address")
	redisAddr := flag.String("redis", "127.0.0.1:6379", "Redis address host:port")
	prefix := flag.String("prefix", "centrifugo", "Redis key and channel prefix")
	presence := flag.Bool("presence", false, "keep Redis presence and emit join/leave on every subscription")
	flag.Parse()

	node, err := centrifuge.New(centrifuge.Config{LogLevel: centrifuge.LogLevelError,
		LogHandler: func(e centrifuge.LogEntry) { log.Printf("%s %v", e.Message, e.Fields) }})
	if err != nil {
		log.Fatal(err)
	}
	shard, err := centrifuge.NewRedisShard(node, centrifuge.RedisShardConfig{Address: *redisAddr})
	if err != nil {
		log.Fatal(err)
	}
	broker, err := centrifuge.NewRedisBroker(node, centrifuge.RedisBrokerConfig{Prefix: *prefix, Shards: []*centrifuge.RedisShard{shard}})
	if err != nil {
		log.Fatal(err)
	}
	node.SetBroker(broker)
	presenceManager, err := centrifuge.NewRedisPresenceManager(node, centrifuge.RedisPresenceManagerConfig{Prefix: *prefix, Shards: []*centrifuge.RedisShard{shard}})
	if err != nil {
		log.Fatal(err)
	}
	node.SetPresenceManager(presenceManager)

	node.OnConnect(func(client *centrifuge.Client) {
		client.OnSubscribe(func(_ centrifuge.SubscribeEvent, cb centrifuge.SubscribeCallback) {
			cb(centrifuge.SubscribeReply{Options: centrifuge.SubscribeOptions{
				EmitPresence: *presence, EmitJoinLeave: *presence, PushJoinLeave: *presence,
			}}, nil)
		})
		client.OnPublish(func(_ centrifuge.PublishEvent, cb centrifuge.PublishCallback) {
			cb(centrifuge.PublishReply{}, nil)
		})
	})
	if err := node.Run(); err != nil {
		log.Fatal(err)
	}

	ws := centrifuge.NewWebsocketHandler(node, centrifuge.WebsocketConfig{
		CheckOrigin: func(*http.Request) bool { return true },
	})
	mux := http.NewServeMux()
	mux.Handle("/connection/websocket", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user := r.URL.Query().Get("user")
		ctx := centrifuge.SetCredentials(r.Context(), &centrifuge.Credentials{UserID: user})
		ws.ServeHTTP(w, r.WithContext(ctx))
	}))
	mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	server := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	go func() {
		if err := server.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Fatal(err)
		}
	}()
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = server.Shutdown(ctx)
	_ = node.Shutdown(ctx)
}
