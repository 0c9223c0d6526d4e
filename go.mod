module github.com/junctionhq/junction

go 1.26.8
